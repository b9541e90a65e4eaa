// The storage account behind the Function App: Durable Functions' task hub (queues,
// tables, blobs), the snapshot container the checkpoint activity writes, the lifeboat
// container (the site's replicas and lease, the watchdog's reports) and, on Flex
// Consumption, the container the deployment package is uploaded to.
// Shared keys are off: everything reaches it with Entra ID (managed identity, az login).

@description('Azure region.')
param location string

@description('Storage account name: 3-24 lower-case letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Replication. Geo-redundant by default: the account holds the lifeboat snapshots.')
@allowed([
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_GRS'

@description('Container of the snapshot blobs (app setting RUSTYFLOWER_SNAPSHOT_CONTAINER).')
param snapshotContainerName string

@description('Container of the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Container of the lifeboat: the site replicas, the site lease and the takeover reports (app setting RUSTYFLOWER_REPLICA_CONTAINER).')
param lifeboatContainerName string

@description('Days a deleted or overwritten blob can be restored.')
@minValue(1)
@maxValue(365)
param blobSoftDeleteDays int = 7

@description('Log Analytics workspace receiving the storage access logs.')
param workspaceId string

@description('Queues of queue.send service tasks (names with the prefix already applied).')
param serviceQueues array = []

@description('Containers of object.put/object.get service tasks (names with the prefix applied).')
param serviceContainers array = []

param tags object = {}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: The Function App is not VNet-integrated in this template (Flex Consumption and Elastic Premium reach storage over its public endpoint); access is Entra ID only (allowSharedKeyAccess false, RBAC roles in roles.bicep). Put the app in a VNet and set defaultAction Deny with a private endpoint to close it further.
  // checkov:skip=CKV_AZURE_59: Public network access stays on for the same reason as CKV_AZURE_35: the app reaches the account over its public endpoint; shared keys and anonymous access are disabled.
  // checkov:skip=CKV_AZURE_206: skuName is a parameter whose @allowed values are all geo-redundant (GRS, RA-GRS, GZRS, RA-GZRS); checkov does not resolve parameters.
  // checkov:skip=CKV_AZURE_43: The name is a parameter (3-24 characters, validated by its decorators); main.bicep builds it from lower-case letters and digits only (prefix without hyphens + uniqueString).
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    isSftpEnabled: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: blobSoftDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: blobSoftDeleteDays
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource snapshotContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: snapshotContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource lifeboatContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: lifeboatContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource serviceContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in serviceContainers: {
    parent: blobService
    name: name
    properties: {
      publicAccess: 'None'
    }
  }
]

resource serviceQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for name in serviceQueues: {
    parent: queueService
    name: name
  }
]

// Read, write and delete logs of every service the task hub uses.
var storageLogs = [
  {
    category: 'StorageRead'
    enabled: true
  }
  {
    category: 'StorageWrite'
    enabled: true
  }
  {
    category: 'StorageDelete'
    enabled: true
  }
]

resource blobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'rustyflower-blob-logs'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: storageLogs
  }
}

resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'rustyflower-queue-logs'
  scope: queueService
  properties: {
    workspaceId: workspaceId
    logs: storageLogs
  }
}

resource tableLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'rustyflower-table-logs'
  scope: tableService
  properties: {
    workspaceId: workspaceId
    logs: storageLogs
  }
}

output storageAccountName string = storage.name
output storageAccountId string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output snapshotContainerName string = snapshotContainer.name
output deploymentContainerName string = deploymentContainer.name
output lifeboatContainerName string = lifeboatContainer.name
