// Optional Azure Cache for Redis (main.bicep: deployRedis), for running the RustyFlower
// Redis runner in Azure after a failover, or as the target of a failback rehearsal.
// TLS only (port 6380, non-TLS port disabled, TLS 1.2), Entra ID authentication only
// (access keys disabled); the Function App identity gets the 'Data Owner' access policy.

@description('Azure region.')
param location string

@description('Cache name, globally unique.')
param redisName string

@description('Basic, Standard or Premium.')
@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param skuName string = 'Standard'

@description('Cache size: C0-C6 (Basic/Standard) or P1-P5 (Premium).')
@minValue(0)
@maxValue(6)
param capacity int = 1

@description('Object id of the identity given the Data Owner access policy.')
param principalId string

param tags object = {}

resource redis 'Microsoft.Cache/redis@2024-03-01' = {
  name: redisName
  location: location
  tags: tags
  properties: {
    // checkov:skip=CKV_AZURE_89: No VNet in this template, so the cache is reached over its public TLS endpoint; access keys are disabled and only Entra ID identities with an access policy can connect.
    sku: {
      name: skuName
      family: skuName == 'Premium' ? 'P' : 'C'
      capacity: capacity
    }
    enableNonSslPort: false
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    disableAccessKeyAuthentication: true
    redisConfiguration: {
      'aad-enabled': 'true'
    }
  }
}

resource appAccess 'Microsoft.Cache/redis/accessPolicyAssignments@2024-03-01' = {
  parent: redis
  name: 'rustyflower-app'
  properties: {
    accessPolicyName: 'Data Owner'
    objectId: principalId
    objectIdAlias: 'rustyflower-function-app'
  }
}

output redisName string = redis.name
output redisHostName string = redis.properties.hostName
output redisSslPort int = redis.properties.sslPort
