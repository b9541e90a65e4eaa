// The RustyFlower Function App (functions_azure/): Python on Linux, Flex Consumption or
// Elastic Premium, running as a user-assigned managed identity that reaches storage, Key
// Vault and Application Insights with Entra ID only.

@description('Azure region.')
param location string

@description('Function App name (also its host name: <name>.azurewebsites.net).')
param functionAppName string

@description('Hosting plan name.')
param planName string

@description('FlexConsumption (serverless, scale to zero) or ElasticPremium (pre-warmed, no cold start).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Elastic Premium size (ignored on Flex Consumption).')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param elasticPremiumSku string = 'EP1'

@description('Python version of the Functions worker.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Flex Consumption: most instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption: memory of each instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Elastic Premium: most instances the plan scales out to.')
@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 20

@description('Spread the plan over availability zones (region must support it; Elastic Premium then keeps at least 3 instances).')
param zoneRedundant bool = false

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (AzureWebJobsStorage__clientId, telemetry).')
param identityClientId string

@description('Storage endpoints of the task hub account.')
param blobEndpoint string
param queueEndpoint string
param tableEndpoint string

@description('Flex Consumption deployment package container.')
param deploymentContainerName string

@description('Application Insights connection string (not a secret: local auth is disabled).')
param appInsightsConnectionString string

@description('Versionless Key Vault secret URI of RUSTYFLOWER_SIGNING_KEYS.')
param signingKeysSecretUri string

@description('Versionless Key Vault secret URI of RUSTYFLOWER_ENCRYPTION_KEYS, or empty.')
param encryptionKeysSecretUri string = ''

@description('RUSTYFLOWER_ACTIVITIES: module(s) that register the flow activities.')
param activities string

@description('RUSTYFLOWER_SNAPSHOT_CONTAINER: container the checkpoint activity writes to.')
param snapshotContainerName string

@description('Durable Functions task hub name (RUSTYFLOWER_TASK_HUB, read by host.json).')
param taskHubName string

@description('RUSTYFLOWER_FLOWS_PATH: file or folder of sub-flow definitions shipped with the app (relative to the app root), or empty.')
param flowsPath string = ''

@description('RUSTYFLOWER_CONTINUE_AS_NEW_AFTER: transitions per orchestration generation (bounds Durable history).')
@minValue(1)
param continueAsNewAfter int = 100

@description('RUSTYFLOWER_CHECKPOINT_EVERY: write the snapshot to Blob storage every N transitions (0: only at the end).')
@minValue(0)
param checkpointEvery int = 1

@description('RUSTYFLOWER_SITE_ID: the site the watchdog watches (empty: the watchdog has nothing to watch).')
param siteId string = ''

@description('RUSTYFLOWER_TAKEOVER_AFTER_SECONDS: seconds without a renewal of the site lease before the watchdog takes the site over.')
@minValue(10)
param takeoverAfterSeconds int = 300

@description('RUSTYFLOWER_WATCHDOG_SCHEDULE: NCRONTAB schedule of the watchdog timer (six fields, with seconds).')
param watchdogSchedule string = '0 */1 * * * *'

@description('RUSTYFLOWER_REPLICA_CONTAINER: the lifeboat container (replicas, site lease, takeover reports).')
param lifeboatContainerName string

@description('RUSTYFLOWER_SERVICES_PREFIX: queues and containers of service tasks are named this + the flow\'s name.')
param servicePrefix string = ''

@description('RUSTYFLOWER_EVENT_TOPICS: bus name -> Event Grid topic endpoint, for event.publish tasks (the app identity needs EventGrid Data Sender on each topic).')
param eventTopics object = {}

param tags object = {}

var isFlex = hostingPlan == 'FlexConsumption'

// Settings functions_azure reads (tests/azure/test_infra.py keeps this list and the code in step).
var rustyflowerSettings = [
  {
    name: 'RUSTYFLOWER_SIGNING_KEYS'
    value: '@Microsoft.KeyVault(SecretUri=${signingKeysSecretUri})'
  }
  {
    name: 'RUSTYFLOWER_ENCRYPTION_KEYS'
    value: empty(encryptionKeysSecretUri) ? '' : '@Microsoft.KeyVault(SecretUri=${encryptionKeysSecretUri})'
  }
  {
    name: 'RUSTYFLOWER_REQUIRE_SIGNATURE'
    value: 'true'
  }
  {
    name: 'RUSTYFLOWER_ACTIVITIES'
    value: activities
  }
  {
    name: 'RUSTYFLOWER_FLOWS_PATH'
    value: flowsPath
  }
  {
    name: 'RUSTYFLOWER_CONTINUE_AS_NEW_AFTER'
    value: string(continueAsNewAfter)
  }
  {
    name: 'RUSTYFLOWER_CHECKPOINT_EVERY'
    value: string(checkpointEvery)
  }
  {
    name: 'RUSTYFLOWER_SNAPSHOT_SINK'
    value: 'blob'
  }
  {
    name: 'RUSTYFLOWER_SNAPSHOT_CONTAINER'
    value: snapshotContainerName
  }
  {
    // the checkpoint activity reaches it with the app identity (DefaultAzureCredential + AZURE_CLIENT_ID)
    name: 'RUSTYFLOWER_SNAPSHOT_ACCOUNT_URL'
    value: blobEndpoint
  }
  {
    // no connection string: shared keys are disabled on the account
    name: 'RUSTYFLOWER_SNAPSHOT_CONNECTION'
    value: ''
  }
  {
    name: 'RUSTYFLOWER_TASK_HUB'
    value: taskHubName
  }
  {
    name: 'RUSTYFLOWER_SITE_ID'
    value: siteId
  }
  {
    name: 'RUSTYFLOWER_TAKEOVER_AFTER_SECONDS'
    value: string(takeoverAfterSeconds)
  }
  {
    // the timer trigger reads it as %RUSTYFLOWER_WATCHDOG_SCHEDULE% (function_app.py)
    name: 'RUSTYFLOWER_WATCHDOG_SCHEDULE'
    value: watchdogSchedule
  }
  {
    // in the account of RUSTYFLOWER_SNAPSHOT_ACCOUNT_URL, reached with the app identity
    name: 'RUSTYFLOWER_REPLICA_CONTAINER'
    value: lifeboatContainerName
  }
  {
    // service tasks: queues and containers in the task hub account, with the app identity
    name: 'RUSTYFLOWER_SERVICES_QUEUE_URL'
    value: queueEndpoint
  }
  {
    name: 'RUSTYFLOWER_SERVICES_BLOB_URL'
    value: blobEndpoint
  }
  {
    // no connection string: shared keys are disabled on the account
    name: 'RUSTYFLOWER_SERVICES_CONNECTION'
    value: ''
  }
  {
    name: 'RUSTYFLOWER_SERVICES_PREFIX'
    value: servicePrefix
  }
  {
    name: 'RUSTYFLOWER_EVENT_TOPICS'
    value: string(eventTopics)
  }
  {
    // no keys: the app identity publishes (EventGrid Data Sender)
    name: 'RUSTYFLOWER_EVENT_TOPIC_KEYS'
    value: ''
  }
]

// The host's storage connection, identity-based: no connection string, no shared key.
var platformSettings = [
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: blobEndpoint
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: queueEndpoint
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: tableEndpoint
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    // azure-identity's DefaultAzureCredential picks the user-assigned identity by this
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  {
    // the worker of Python 3.12 and older imports its own azure-functions unless told to
    // use the app's: the app needs >= 1.25 (Event Grid triggers decode CloudEvents)
    name: 'PYTHON_ISOLATE_WORKER_DEPENDENCIES'
    value: '1'
  }
]

// Flex Consumption sets runtime and version from functionAppConfig and refuses these.
var premiumSettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'python'
  }
]

var flexSku = {
  name: 'FC1'
  tier: 'FlexConsumption'
}

var premiumSku = {
  name: elasticPremiumSku
  tier: 'ElasticPremium'
}

// Flex Consumption: the package is pulled from a blob container with the app identity.
var flexConfig = {
  deployment: {
    storage: {
      type: 'blobContainer'
      value: '${blobEndpoint}${deploymentContainerName}'
      authentication: {
        type: 'UserAssignedIdentity'
        userAssignedIdentityResourceId: identityId
      }
    }
  }
  scaleAndConcurrency: {
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  runtime: {
    name: 'python'
    version: pythonVersion
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? flexSku : premiumSku
  properties: {
    // checkov:skip=CKV_AZURE_225: zoneRedundant is the parameter of the same name (off by default: only some regions offer zone-redundant Flex Consumption / Elastic Premium plans, and Elastic Premium then bills 3 instances); checkov does not resolve parameters.
    reserved: true
    zoneRedundant: zoneRedundant
    maximumElasticWorkerCount: isFlex ? null : maximumElasticWorkerCount
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_222: The on-premises site and its watchdog call the starter over the public endpoint during a disaster; every route needs a function key (the management API the system key). Add access restrictions or a private endpoint where the network allows.
    // checkov:skip=CKV_AZURE_17: Client certificates are not used: callers authenticate with function keys over TLS 1.2.
    // checkov:skip=CKV_AZURE_212: numberOfWorkers does not apply to Functions: Flex Consumption and Elastic Premium add and remove instances themselves, and the Durable task hub hands an orchestration to another instance when one is lost.
    // checkov:skip=CKV_AZURE_213: functions_azure exposes no health route: instance health is the Functions host's, and work left by a lost instance is redelivered from the task hub queues.
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      linuxFxVersion: isFlex ? null : 'Python|${pythonVersion}'
      appSettings: isFlex ? concat(rustyflowerSettings, platformSettings) : concat(rustyflowerSettings, platformSettings, premiumSettings)
    }
    functionAppConfig: isFlex ? flexConfig : null
  }
}

// Publishing uses Entra ID (az login / func with an az session): no FTP or basic-auth SCM.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output functionAppName string = site.name
output functionAppHostName string = site.properties.defaultHostName
output planName string = plan.name
