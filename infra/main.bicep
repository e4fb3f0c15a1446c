// Entry point for `azd provision` (azd reads infra/main.bicep with infra/main.parameters.json).
// Subscription scope so that azd can create the resource group, as in the Azure Functions
// Flex Consumption quickstarts. Every resource is declared in this repository (no registry
// modules), so all of it can be checked offline.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; it seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region for all resources; it must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations lists them).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Name of the resource group; empty means rg-<environmentName>.')
param resourceGroupName string = ''

// ---- Settings the function code reads (see local.settings.json.example) ----

@description('Twilio Account SID (starts with AC); an identifier, not a secret.')
param twilioAccountSid string

@secure()
@description('Twilio auth token; stored in Key Vault, never in app settings.')
param twilioAuthToken string

@secure()
@description('Secondary Twilio auth token while rotating tokens (optional).')
param twilioAuthTokenSecondary string = ''

@secure()
@description('Secret of the Twilio SharedKey a Webhook Setting signs webhooks with (optional).')
param twilioSharedKeySecret string = ''

@secure()
@description('Secret of a second SharedKey, while rotating signing keys (optional).')
param twilioSharedKeySecretSecondary string = ''

@description('Twilio API key SID (optional; used with twilioApiSecret for REST calls).')
param twilioApiKey string = ''

@secure()
@description('Twilio API key secret (optional); stored in Key Vault.')
param twilioApiSecret string = ''

@description('Twilio phone number in E.164, the caller ID of make_call.')
param twilioPhoneNumber string

@description('Extra E.164 caller IDs, comma-separated (optional).')
param callerIds string = ''

@description('What the voice webhook says.')
param voiceGreeting string = 'Hello Monkey!'

@description('TwiML <Say> voice (optional).')
param voiceName string = ''

@description('TwiML <Say> language (optional).')
param voiceLanguage string = ''

@description('Call-flow file voice_url walks callers through, relative to the app root (optional; docs/call-flows.md).')
param callFlow string = ''

@description('Reply to incoming SMS.')
param smsReply string = 'Hey, thanks for the ping! Twilio and Azure rock!'

@description('What sms_url answers HELP and INFO with; empty: no reply from the app.')
param smsHelpReply string = ''

@description('Message-flow file sms_url answers texts with, relative to the app root (optional; docs/inbound-texts.md).')
param messageFlow string = ''

@description('ISO 3166 alpha-2 countries make_call may dial, comma-separated; empty means the country of twilioPhoneNumber.')
param callAllowedCountries string = ''

@description('Timeout in seconds of calls to the Twilio REST API.')
param twilioHttpTimeout string = '10'

@description('Messaging Service SID (MG...) that send_sms sends through (optional; Twilio then picks the sender).')
param twilioMessagingServiceSid string = ''

@description('Other Twilio numbers send_sms may send from, E.164, comma-separated (optional).')
param smsSenders string = ''

@description('ISO 3166 alpha-2 countries send_sms may text, comma-separated; empty means the country of twilioPhoneNumber.')
param smsAllowedCountries string = ''

@description('Calls and messages broadcasts create a second at most, every instance of broadcast_send together (optional; empty means no pacing beyond the queue\'s 16 messages at once per instance).')
param broadcastSendsPerSecond string = ''

@description('The TwiML App (AP...) the console softphone\'s calls go through; scripts/set_twilio_webhooks.py creates it and prints its SID (optional; empty: no calls from the browser).')
param twilioTwimlAppSid string = ''

@description('The identity the console softphone signs in to Twilio with when nobody is signed in to the app (optional; default console).')
param consoleClientIdentity string = ''

// ---- The console's sign-in (docs/console-sign-in.md) ----

@description('Put App Service Authentication (Microsoft Entra ID) in front of the app, so that the console also requires a signed-in user (optional; off: the Functions key alone). Twilio\'s webhooks stay reachable without signing in.')
param consoleSignIn bool = false

@description('Application (client) ID of the Entra app registration users sign in to the console with; needed when consoleSignIn is true.')
@maxLength(36)
param consoleSignInClientId string = ''

// ---- Alerts (docs/operations.md) ----

@description('E-mail address the alert rules write to (optional; empty: no action group and no alert rules, which would be billed every month and tell no one). The workbook is deployed either way.')
param alertEmail string = ''

@minValue(10)
@maxValue(1440)
@description('Minutes broadcast_send may keep working (deferring, retrying) without settling a recipient before the stuck-broadcast alert fires.')
param alertStuckBroadcastMinutes int = 30

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    appPrincipalId: identity.outputs.principalId
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    twilioAuthToken: twilioAuthToken
    twilioAuthTokenSecondary: twilioAuthTokenSecondary
    twilioApiSecret: twilioApiSecret
    twilioSharedKeySecret: twilioSharedKeySecret
    twilioSharedKeySecretSecondary: twilioSharedKeySecretSecondary
  }
}

// The dashboard over the app's telemetry, always; the alerts only when someone is to be told.
module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.id
  }
}

module alerts 'app/alerts.bicep' = if (!empty(alertEmail)) {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.id
    actionGroupName: '${abbrs.insightsActionGroups}${resourceToken}'
    ruleNamePrefix: '${abbrs.insightsScheduledQueryRules}${resourceToken}'
    alertEmail: alertEmail
    stuckBroadcastMinutes: alertStuckBroadcastMinutes
  }
}

// Secrets are Key Vault references; the optional ones appear only when they were given.
var authTokenSetting = {
  TWILIO_AUTH_TOKEN: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.authTokenSecretUri})'
}
var authTokenSecondarySetting = empty(twilioAuthTokenSecondary) ? {} : {
  TWILIO_AUTH_TOKEN_SECONDARY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.authTokenSecondarySecretUri})'
}
var apiSecretSetting = empty(twilioApiSecret) ? {} : {
  TWILIO_API_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.apiSecretSecretUri})'
}
var sharedKeySecretSetting = empty(twilioSharedKeySecret) ? {} : {
  TWILIO_SHARED_KEY_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.sharedKeySecretSecretUri})'
}
var sharedKeySecretSecondarySetting = empty(twilioSharedKeySecretSecondary) ? {} : {
  TWILIO_SHARED_KEY_SECRET_SECONDARY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.sharedKeySecretSecondarySecretUri})'
}

// PUBLIC_BASE_URL is added by the module: it is the app's own https URL.
var twilioPlainSettings = {
  TWILIO_ACCOUNT_SID: twilioAccountSid
  TWILIO_API_KEY: twilioApiKey
  TWILIO_PHONE_NUMBER: twilioPhoneNumber
  CALLER_IDS: callerIds
  VOICE_GREETING: voiceGreeting
  VOICE_NAME: voiceName
  VOICE_LANGUAGE: voiceLanguage
  SMS_REPLY: smsReply
  SMS_HELP_REPLY: smsHelpReply
  MESSAGE_FLOW: messageFlow
  CALL_FLOW: callFlow
  CALL_ALLOWED_COUNTRIES: callAllowedCountries
  TWILIO_HTTP_TIMEOUT: twilioHttpTimeout
  TWILIO_MESSAGING_SERVICE_SID: twilioMessagingServiceSid
  SMS_SENDERS: smsSenders
  SMS_ALLOWED_COUNTRIES: smsAllowedCountries
  BROADCAST_SENDS_PER_SECOND: broadcastSendsPerSecond
  TWILIO_TWIML_APP_SID: twilioTwimlAppSid
  CONSOLE_CLIENT_IDENTITY: consoleClientIdentity
}

// The console's functions require a signed-in user too exactly when App Service Authentication is
// put in front of the app (shared/console/settings.py reads it).
var consoleSettings = {
  CONSOLE_REQUIRE_SIGN_IN: consoleSignIn ? 'true' : 'false'
}

module functionApp 'app/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    appSettings: union(twilioPlainSettings, consoleSettings, authTokenSetting, authTokenSecondarySetting, apiSecretSetting, sharedKeySecretSetting, sharedKeySecretSecondarySetting)
    consoleSignIn: consoleSignIn
    consoleSignInClientId: consoleSignInClientId
  }
  // The app must not start before it may read its secrets and telemetry target.
  dependsOn: [
    keyVault
    monitoring
  ]
}

// azd stores these outputs in the environment (.azure/<env>/.env); the postdeploy hook
// scripts/set_twilio_webhooks.py reads FUNCTION_APP_BASE_URL (else SERVICE_API_URI) from there.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.baseUrl
output FUNCTION_APP_BASE_URL string = functionApp.outputs.baseUrl
output MAKE_CALL_URL string = '${functionApp.outputs.baseUrl}/api/make_call'
output VOICE_URL string = '${functionApp.outputs.baseUrl}/api/voice_url'
output SMS_URL string = '${functionApp.outputs.baseUrl}/api/sms_url'
// For the console's sign-in (docs/console-sign-in.md): the app registration's redirect URI, and the
// subject of its federated credential (the app's managed identity, which signs in for it).
output CONSOLE_SIGN_IN_REDIRECT_URI string = '${functionApp.outputs.baseUrl}/.auth/login/aad/callback'
output AZURE_FUNCTION_APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
