// The app's user-assigned managed identity. It exists before the Function App so that its role
// assignments (storage, Key Vault, Application Insights) are in place when the app first starts:
// Key Vault references and the deployment package are then readable from the first request.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
