// Key Vault (RBAC, soft delete, purge protection) holding the snapshot keys. The Function
// App reads them through Key Vault references in its app settings, so the secrets never
// appear in the site configuration.

@description('Azure region.')
param location string

@description('Key Vault name: 3-24 letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Value of RUSTYFLOWER_SIGNING_KEYS: keyid:base64secret[,keyid:base64secret...] (`rustyflower keygen`). The first key signs; all verify.')
@secure()
param signingKeys string

@description('Optional value of RUSTYFLOWER_ENCRYPTION_KEYS (same form, 32-byte AES keys). Empty: snapshots are signed, not encrypted.')
@secure()
param encryptionKeys string = ''

@description('Log Analytics workspace receiving the vault\'s audit events.')
param workspaceId string

param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: The Function App resolves Key Vault references over the vault's public endpoint (no VNet in this template, and App Service is not a trusted service for references); access is RBAC only, every read is audited to Log Analytics.
  // checkov:skip=CKV_AZURE_189: Public network access stays on for the same reason as CKV_AZURE_109: Key Vault references are resolved over the public endpoint; RBAC only, audited.
  name: keyVaultName
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
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
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

// No expiry on the key secrets: Key Vault refuses to read an expired secret, and the
// lifeboat must not sink because a date passed during the disaster. Rotate on a schedule
// instead (docs/azure-deploy.md: add the new key first, keep the old one until no stored
// snapshot names it).
resource signingSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: An expired signing key would make the Key Vault reference fail and the Function App refuse every failover snapshot; rotation is procedural (docs/azure-deploy.md).
  parent: vault
  name: 'rustyflower-signing-keys'
  properties: {
    value: signingKeys
    contentType: 'text/plain; rustyflower keys: keyid:base64secret[,...]'
    attributes: {
      enabled: true
    }
  }
}

resource encryptionSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(encryptionKeys)) {
  // checkov:skip=CKV_AZURE_41: Same reason as for the signing keys: an expired data key would make every encrypted snapshot unreadable at failover.
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the properties of a conditional (if) resource.
  parent: vault
  name: 'rustyflower-encryption-keys'
  properties: {
    value: encryptionKeys
    contentType: 'text/plain; rustyflower keys: keyid:base64key[,...]'
    attributes: {
      enabled: true
    }
  }
}

resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'rustyflower-vault-audit'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output keyVaultName string = vault.name
output keyVaultId string = vault.id
output keyVaultUri string = vault.properties.vaultUri
// Versionless URIs: a Key Vault reference to them follows the newest version of the secret.
output signingKeysSecretUri string = '${vault.properties.vaultUri}secrets/${signingSecret.name}'
output encryptionKeysSecretUri string = empty(encryptionKeys) ? '' : '${vault.properties.vaultUri}secrets/rustyflower-encryption-keys'
