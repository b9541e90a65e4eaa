// RustyFlower in Azure: the Durable Functions app that continues on-premises flow
// instances from their signed snapshots, with everything it needs in one resource group.
//
//   az deployment group create -g <rg> -f infra/bicep/main.bicep \
//     -p infra/bicep/main.parameters.json -p signingKeys=<RUSTYFLOWER_SIGNING_KEYS value>
//
// infra/bicep/deploy.sh does that and publishes functions_azure/; see infra/bicep/README.md
// for every parameter and output, docs/azure-deploy.md for the whole procedure.

targetScope = 'resourceGroup'

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Prefix of resource names: 3-11 characters, starting with a letter (letters, digits, hyphens).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'rustyflower'

@description('FlexConsumption (serverless, scale to zero) or ElasticPremium (pre-warmed instances).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Elastic Premium size (hostingPlan ElasticPremium only).')
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

@description('Spread the hosting plan over availability zones (only in regions that offer it).')
param zoneRedundant bool = false

@description('Value of RUSTYFLOWER_SIGNING_KEYS, the same keys the on-premises site signs with: keyid:base64secret[,...] (`rustyflower keygen`). Stored in Key Vault only.')
@secure()
param signingKeys string

@description('Optional value of RUSTYFLOWER_ENCRYPTION_KEYS (same form, AES-256 keys). Empty: no encryption.')
@secure()
param encryptionKeys string = ''

@description('RUSTYFLOWER_ACTIVITIES: `module` or `module:attribute` of the ActivityRegistry the activity function runs (shipped in the app package).')
param activities string = 'functions_azure.activities'

@description('RUSTYFLOWER_FLOWS_PATH: sub-flow definitions shipped with the app (file or folder, relative to the app root), or empty.')
param flowsPath string = ''

@description('RUSTYFLOWER_CONTINUE_AS_NEW_AFTER: transitions per orchestration generation before continue-as-new.')
@minValue(1)
param continueAsNewAfter int = 100

@description('RUSTYFLOWER_CHECKPOINT_EVERY: checkpoint the snapshot to Blob storage every N transitions (0: only at the end).')
@minValue(0)
param checkpointEvery int = 1

@description('Container of the snapshot blobs (RUSTYFLOWER_SNAPSHOT_CONTAINER).')
param snapshotContainerName string = 'rustyflower-snapshots'

@description('Container of the lifeboat: site replicas, site lease, takeover reports (RUSTYFLOWER_REPLICA_CONTAINER).')
param lifeboatContainerName string = 'rustyflower-lifeboat'

@description('The on-premises site the watchdog watches (RUSTYFLOWER_SITE_ID, as the site sets it). Empty: no watchdog takeover.')
param siteId string = ''

@description('Seconds without a renewal of the site lease before the watchdog takes the site over (RUSTYFLOWER_TAKEOVER_AFTER_SECONDS).')
@minValue(10)
param takeoverAfterSeconds int = 300

@description('NCRONTAB schedule of the watchdog timer (RUSTYFLOWER_WATCHDOG_SCHEDULE), six fields with seconds.')
param watchdogSchedule string = '0 */1 * * * *'

@description('Principal (object) id the site replicates as; it gets Storage Blob Data Contributor on the lifeboat container only. Empty: grant it yourself.')
param sitePrincipalId string = ''

@description('Kind of the site principal.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param sitePrincipalType string = 'ServicePrincipal'

@description('Durable Functions task hub name (letters and digits, 3-45 characters).')
@minLength(3)
@maxLength(45)
param taskHubName string = 'RustyFlowerHub'

@description('Storage replication: geo-redundant, the account holds the lifeboat snapshots.')
@allowed([
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param storageSku string = 'Standard_GRS'

@description('Days Log Analytics keeps logs and telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Also deploy an Azure Cache for Redis (TLS only, Entra ID auth).')
param deployRedis bool = false

@description('Redis tier when deployRedis is true.')
@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param redisSku string = 'Standard'

@description('Redis size when deployRedis is true (C0-C6, or P1-P5 for Premium).')
@minValue(0)
@maxValue(6)
param redisCapacity int = 1

@description('Tags on every resource.')
@description('Service tasks: the prefix of their queues and containers (RUSTYFLOWER_SERVICES_PREFIX).')
param servicePrefix string = 'svc-'

@description('Service tasks: the queue names the flows send to (queue.send), without the prefix.')
param serviceQueues array = []

@description('Service tasks: the store names the flows put and get objects in, without the prefix.')
param serviceStores array = []

@description('Service tasks: bus name -> Event Grid topic endpoint (event.publish).')
param eventTopics object = {}

param tags object = {
  application: 'rustyflower'
}

var suffix = uniqueString(resourceGroup().id, namePrefix)
var prefix = toLower(namePrefix)
var names = {
  identity: '${prefix}-app-id-${suffix}'
  workspace: '${prefix}-logs-${suffix}'
  appInsights: '${prefix}-ai-${suffix}'
  storage: take('${replace(prefix, '-', '')}${suffix}', 24)
  keyVault: take('${prefix}-kv-${suffix}', 24)
  plan: '${prefix}-plan-${suffix}'
  functionApp: '${prefix}-func-${suffix}'
  redis: '${prefix}-redis-${suffix}'
  deploymentContainer: 'app-package'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'rustyflower-monitoring'
  params: {
    location: location
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    retentionInDays: logRetentionInDays
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'rustyflower-storage'
  params: {
    location: location
    storageAccountName: names.storage
    skuName: storageSku
    snapshotContainerName: snapshotContainerName
    deploymentContainerName: names.deploymentContainer
    lifeboatContainerName: lifeboatContainerName
    workspaceId: monitoring.outputs.workspaceId
    serviceQueues: [for name in serviceQueues: '${servicePrefix}${name}']
    serviceContainers: [for name in serviceStores: '${servicePrefix}${name}']
    tags: tags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'rustyflower-keyvault'
  params: {
    location: location
    keyVaultName: names.keyVault
    signingKeys: signingKeys
    encryptionKeys: encryptionKeys
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'rustyflower-roles'
  params: {
    principalId: identity.properties.principalId
    storageAccountName: storage.outputs.storageAccountName
    keyVaultName: keyVault.outputs.keyVaultName
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'rustyflower-functionapp'
  dependsOn: [
    roles
  ]
  params: {
    location: location
    functionAppName: names.functionApp
    planName: names.plan
    hostingPlan: hostingPlan
    elasticPremiumSku: elasticPremiumSku
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    zoneRedundant: zoneRedundant
    identityId: identity.id
    identityClientId: identity.properties.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    signingKeysSecretUri: keyVault.outputs.signingKeysSecretUri
    encryptionKeysSecretUri: keyVault.outputs.encryptionKeysSecretUri
    activities: activities
    snapshotContainerName: storage.outputs.snapshotContainerName
    taskHubName: taskHubName
    flowsPath: flowsPath
    continueAsNewAfter: continueAsNewAfter
    checkpointEvery: checkpointEvery
    siteId: siteId
    takeoverAfterSeconds: takeoverAfterSeconds
    watchdogSchedule: watchdogSchedule
    lifeboatContainerName: storage.outputs.lifeboatContainerName
    servicePrefix: servicePrefix
    eventTopics: eventTopics
    tags: tags
  }
}

module lifeboat 'modules/lifeboat.bicep' = if (!empty(sitePrincipalId)) {
  name: 'rustyflower-lifeboat'
  params: {
    storageAccountName: storage.outputs.storageAccountName
    lifeboatContainerName: storage.outputs.lifeboatContainerName
    sitePrincipalId: sitePrincipalId
    sitePrincipalType: sitePrincipalType
  }
}

module redis 'modules/redis.bicep' = if (deployRedis) {
  name: 'rustyflower-redis'
  params: {
    location: location
    redisName: names.redis
    skuName: redisSku
    capacity: redisCapacity
    principalId: identity.properties.principalId
    tags: tags
  }
}

@description('Name of the Function App (func azure functionapp publish <name>).')
output functionAppName string = functionApp.outputs.functionAppName

@description('Host name of the Function App; the starter is https://<host>/api/instances.')
output functionAppHostName string = functionApp.outputs.functionAppHostName

@description('Base URL for DurableClient / rustyflower failover --to azure.')
output functionAppUrl string = 'https://${functionApp.outputs.functionAppHostName}'

@description('Storage account of the task hub and the snapshot blobs.')
output storageAccountName string = storage.outputs.storageAccountName

@description('Blob endpoint of that account (BlobSnapshotStore.from_account_url).')
output blobEndpoint string = storage.outputs.blobEndpoint

@description('Container of the snapshot blobs.')
output snapshotContainerName string = storage.outputs.snapshotContainerName

@description('Container of the lifeboat (the site sets RUSTYFLOWER_REPLICA_CONTAINER to it).')
output lifeboatContainerName string = storage.outputs.lifeboatContainerName

@description('Key Vault holding the snapshot keys.')
output keyVaultName string = keyVault.outputs.keyVaultName

@description('The Application Insights workbook of the flows (per flow and state).')
output workbookId string = monitoring.outputs.workbookId

@description('URI of that Key Vault.')
output keyVaultUri string = keyVault.outputs.keyVaultUri

@description('Application Insights component of the app.')
output appInsightsName string = monitoring.outputs.appInsightsName

@description('App setting that holds the Application Insights connection string.')
output appInsightsConnectionStringSetting string = 'APPLICATIONINSIGHTS_CONNECTION_STRING'

@description('Client id of the managed identity the app runs as.')
output identityClientId string = identity.properties.clientId

@description('Durable Functions task hub name.')
output taskHubName string = taskHubName

@description('Redis host name (empty unless deployRedis).')
output redisHostName string = deployRedis ? redis.outputs.redisHostName : ''

@description('Redis TLS port (0 unless deployRedis).')
output redisSslPort int = deployRedis ? redis.outputs.redisSslPort : 0
