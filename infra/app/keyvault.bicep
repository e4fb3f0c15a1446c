// Key Vault (RBAC mode) holding the Twilio secrets. The deployment writes the secrets through the
// control plane (no data-plane role needed for whoever runs azd); the app only reads them, via
// Key Vault references, with the role Key Vault Secrets User on this vault.
// The outputs are secret URIs without a version, so a rotated secret is picked up without a
// redeploy; they are not secret values.

@description('Name of the vault (3-24 characters).')
param name string

@description('Azure region.')
param location string

@description('Tags for the vault.')
param tags object = {}

@description('Principal id of the app identity that reads the secrets.')
param appPrincipalId string

@secure()
@description('Twilio auth token (required).')
param twilioAuthToken string

@secure()
@description('Secondary Twilio auth token, during a token rotation (optional).')
param twilioAuthTokenSecondary string = ''

@secure()
@description('Twilio API key secret (optional).')
param twilioApiSecret string = ''

@secure()
@description('Secret of the Twilio SharedKey that signs webhooks (optional).')
param twilioSharedKeySecret string = ''

@secure()
@description('Secret of a second SharedKey, during a signing key rotation (optional).')
param twilioSharedKeySecretSecondary string = ''

// Built-in role "Key Vault Secrets User".
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource authToken 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'twilio-auth-token'
  properties: {
    value: twilioAuthToken
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource authTokenSecondary 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(twilioAuthTokenSecondary)) {
  parent: vault
  name: 'twilio-auth-token-secondary'
  properties: {
    value: twilioAuthTokenSecondary
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource apiSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(twilioApiSecret)) {
  parent: vault
  name: 'twilio-api-secret'
  properties: {
    value: twilioApiSecret
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource sharedKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(twilioSharedKeySecret)) {
  parent: vault
  name: 'twilio-shared-key-secret'
  properties: {
    value: twilioSharedKeySecret
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource sharedKeySecretSecondary 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(twilioSharedKeySecretSecondary)) {
  parent: vault
  name: 'twilio-shared-key-secret-secondary'
  properties: {
    value: twilioSharedKeySecretSecondary
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output authTokenSecretUri string = authToken.properties.secretUri
output authTokenSecondarySecretUri string = empty(twilioAuthTokenSecondary) ? '' : authTokenSecondary.properties.secretUri
output apiSecretSecretUri string = empty(twilioApiSecret) ? '' : apiSecret.properties.secretUri
output sharedKeySecretSecretUri string = empty(twilioSharedKeySecret) ? '' : sharedKeySecret.properties.secretUri
output sharedKeySecretSecondarySecretUri string = empty(twilioSharedKeySecretSecondary) ? '' : sharedKeySecretSecondary.properties.secretUri
