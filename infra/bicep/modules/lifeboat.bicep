// The site's access to the lifeboat container: it writes its replicas and renews its
// lease there, and reads the watchdog's takeover reports. Least privilege: Storage Blob
// Data Contributor on that one container only (not the account, not the task hub). The
// app identity (the watchdog) already holds Storage Blob Data Owner on the account
// (roles.bicep).

@description('Storage account of the lifeboat container.')
param storageAccountName string

@description('The lifeboat container.')
param lifeboatContainerName string

@description('Principal (object) id of the site: the identity `rustyflower replicate` runs as (a service principal, a managed identity of an Arc-enabled server, a group).')
param sitePrincipalId string

@description('Kind of that principal.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param sitePrincipalType string = 'ServicePrincipal'

// Built-in role definition id (the same in every tenant).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource lifeboatContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: lifeboatContainerName
}

resource siteAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lifeboatContainer.id, sitePrincipalId, storageBlobDataContributor)
  scope: lifeboatContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: sitePrincipalId
    principalType: sitePrincipalType
  }
}
