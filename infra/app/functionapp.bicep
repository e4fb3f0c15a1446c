// The Linux Function App on the Flex Consumption plan (FC1): no always-ready instances, so it
// costs nothing at rest and scales out per HTTP concurrency up to maximumInstanceCount.
// Transport hardening (HTTPS only, TLS 1.2, HTTP/2, no password publishing) is written out
// literally here, so the offline checks (checkov, tests/test_infra.py) see the real values.
// FC1 accepts fewer site properties and app settings than other plans: nothing here is in
// Microsoft's list of what Flex Consumption deprecates (tests/test_infra.py holds that list),
// https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
// Each property below that Microsoft's Flex quickstart (Azure-Samples/functions-quickstart-python-http-azd)
// does not set says on its line why it is here and where it is documented.
// siteConfig.ftpsState is absent on purpose: FC1 has no FTP(S), the list above names it, and ARM
// answers BadRequest to it (checkov's CKV_AZURE_78 is waived in tests/test_infra.py for that reason).

@description('Name of the Function App (also the first label of its default host name).')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region.')
param location string

@description('Tags for the plan and the app.')
param tags object = {}

@description('Resource id of the app\'s user-assigned managed identity.')
param identityId string

@description('Client id of that identity (identity-based connections name it explicitly).')
param identityClientId string

@description('Storage account for the host and the deployment package.')
param storageAccountName string

@description('Blob endpoint of that account, ending in a slash.')
param storageBlobEndpoint string

@description('Blob container that holds the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string (not a secret: local auth is disabled).')
param applicationInsightsConnectionString string

@description('Settings the function code reads; secrets arrive here as Key Vault references.')
param appSettings object

@description('Memory per instance in MB (Flex Consumption offers 512, 2048 or 4096).')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Upper bound on scale-out; 40 is the smallest the plan allows and caps runaway cost.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Concurrent HTTP requests each instance takes before the plan adds another. Flex Consumption defaults Python apps to 1, which suits a thread-per-request app; every function here is async on the worker\'s event loop, mostly waiting on Twilio or storage, so one instance serves many at once.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('Put App Service Authentication (Microsoft Entra ID) in front of the app for the console; it lets every request through and only names the signed-in user (docs/console-sign-in.md).')
param consoleSignIn bool = false

@description('Application (client) ID of the Entra app registration users sign in to the console with; needed when consoleSignIn is true.')
@maxLength(36)
param consoleSignInClientId string = ''

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    // HTTP is redirected to HTTPS (checkov CKV_AZURE_70); https://learn.microsoft.com/azure/azure-functions/security-concepts#require-https
    httpsOnly: true
    // Twilio presents no client certificate (CKV_AZURE_17 is waived); https://learn.microsoft.com/azure/app-service/app-service-web-configure-tls-mutual-auth
    clientCertEnabled: false
    // Twilio calls the webhooks from the internet (CKV_AZURE_222 is waived); https://learn.microsoft.com/azure/azure-functions/functions-networking-options
    publicNetworkAccess: 'Enabled'
    // Key Vault references resolve with the user-assigned identity; https://learn.microsoft.com/azure/app-service/app-service-key-vault-references#access-vaults-with-a-user-assigned-identity
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      // TLS 1.2 at least on the app (CKV_AZURE_145); https://learn.microsoft.com/azure/app-service/configure-ssl-bindings#enforce-tls-versions
      minTlsVersion: '1.2'
      // and on the SCM endpoint that azd and Core Tools deploy through; same page as minTlsVersion
      scmMinTlsVersion: '1.2'
      // HTTP/2 for the webhooks (CKV_AZURE_18); https://learn.microsoft.com/azure/app-service/configure-common#configure-general-settings
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        // Python's default is 1 request per instance: each concurrent webhook or callback would
        // wait for an instance of its own (a cold start). https://learn.microsoft.com/azure/azure-functions/functions-concurrency#http-trigger-concurrency
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    // appSettings: the settings the function code reads (README's settings table); none is a platform setting.
    properties: union(appSettings, {
      // Identity-based host storage named by account; https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
      AzureWebJobsStorage__accountName: storageAccountName
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      // The app's own https URL: the origin whose Twilio signatures it checks (README's settings table).
      PUBLIC_BASE_URL: 'https://${functionApp.properties.defaultHostName}'
      // Where zoneinfo finds time zones (a call flow's hours): the folders of Python's default, said
      // here so a first call need not load the build configuration (docs/benchmark.md); a zone not
      // there comes from the tzdata package. https://docs.python.org/3/library/zoneinfo.html
      PYTHONTZPATH: '/usr/share/zoneinfo:/usr/lib/zoneinfo:/usr/share/lib/zoneinfo:/etc/zoneinfo'
    }, signInSettings)
  }
}

// Platform settings of the console's sign-in, only with consoleSignIn (docs/console-sign-in.md).
// OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID: sign-in proves the app registration's identity with the
// app's managed identity (a federated identity credential on the registration) instead of a
// client secret, so there is no secret to store or rotate (preview);
// https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad#use-a-managed-identity-instead-of-a-secret-preview
// WEBSITE_AUTH_AAD_ALLOWED_TENANTS: tokens from this tenant only (a 403 otherwise);
// https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad#use-a-built-in-authorization-policy
var signInSettings = consoleSignIn ? {
  OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID: identityClientId
  WEBSITE_AUTH_AAD_ALLOWED_TENANTS: tenant().tenantId
} : {}

// App Service Authentication (Easy Auth) with Microsoft Entra ID, deployed only with consoleSignIn.
// It never refuses a request: Twilio's webhooks (voice_url, sms_url, call_flow, call_status,
// message_status, recording_status) must reach the app without signing in (Twilio signs them
// instead), so unauthenticated requests go through (AllowAnonymous, no excludedPaths needed) and
// the console's own functions require the signed-in user themselves (CONSOLE_REQUIRE_SIGN_IN,
// X-MS-CLIENT-PRINCIPAL-ID). Each property's documentation and what the Flex Consumption pages
// say about the feature: docs/console-sign-in.md; the properties, as the ARM reference names them:
// https://learn.microsoft.com/azure/templates/microsoft.web/sites/config-authsettingsv2
// Turning consoleSignIn off later does not delete this resource (ARM's incremental mode): the
// doc says how to switch authentication off.
resource signIn 'Microsoft.Web/sites/config@2024-04-01' = if (consoleSignIn) {
  parent: functionApp
  name: 'authsettingsV2'
  // The app setting it names (OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID) exists first.
  dependsOn: [
    functionApp::settings
  ]
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      // Signed in or not, every request reaches the app; never RedirectToLoginPage or Return401
      // here, which would shut Twilio out of the webhooks.
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: consoleSignInClientId
          // Not a secret's name: the managed identity's federated credential (signInSettings).
          clientSecretSettingName: 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'
          // <authentication endpoint>/<tenant id>/v2.0, the endpoint of this cloud.
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          // Bearer tokens of API callers (make_call, send_sms) requested for the registration's
          // Application ID URI (v1 tokens) or its client ID (v2 tokens).
          allowedAudiences: [
            'api://${consoleSignInClientId}'
            consoleSignInClientId
          ]
        }
      }
    }
    login: {
      // The app needs no provider tokens, only who signed in (the session cookie says so);
      // nothing is stored.
      tokenStore: {
        enabled: false
      }
    }
  }
}

// Publishing with user name and password (FTP and the SCM site) stays off: azd and Core Tools
// deploy with Microsoft Entra tokens. Not in Microsoft's Flex quickstart; documented at
// https://learn.microsoft.com/azure/app-service/configure-basic-auth-disable
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output baseUrl string = 'https://${functionApp.properties.defaultHostName}'
