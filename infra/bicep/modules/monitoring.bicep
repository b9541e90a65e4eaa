// Log Analytics workspace and the workspace-based Application Insights of the Function App.
// Local (instrumentation key) authentication is off: the app's managed identity publishes
// telemetry with Entra ID (role 'Monitoring Metrics Publisher', see roles.bicep).

@description('Azure region.')
param location string

@description('Log Analytics workspace name.')
param workspaceName string

@description('Application Insights component name.')
param appInsightsName string

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

param tags object = {}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

// The flows at a glance, from the app's telemetry records (functions_azure/telemetry.py:
// log lines 'rustyflower.event {json}' in traces), named after the flows and states.
var events = 'traces | where message startswith "rustyflower.event " | extend e = parse_json(substring(message, 18)) | extend event = tostring(e.event), flow = tostring(e.flow), state = tostring(e.state), status = tostring(e.status), instance = tostring(e.instance)'

var workbookContent = {
  version: 'Notebook/1.0'
  items: [
    {
      type: 1
      content: {
        json: '## RustyFlower flows\nFinished instances, activity calls per state and where running instances stand, per flow (functions_azure/telemetry.py).'
      }
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        title: 'Finished instances by flow and status'
        query: '${events} | where event == "FlowFinished" | summarize instances = count() by flow, status | order by flow asc'
        size: 0
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'barchart'
      }
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        title: 'Activity and service calls by flow and state'
        query: '${events} | where event startswith "Activity" | summarize calls = count(), failed = countif(event == "ActivityFailed") by flow, state, activity = tostring(e.activity) | order by flow asc, state asc'
        size: 0
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'table'
      }
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        title: 'Running instances by flow and state'
        query: '${events} | where event in ("FlowTransition", "FlowFinished") | summarize arg_max(timestamp, event, e) by instance | where event == "FlowTransition" | mv-expand state = e.states | summarize instances = count() by flow = tostring(e.flow), state = tostring(state)'
        size: 0
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'table'
      }
    }
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, appInsightsName, 'rustyflower-flows')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'RustyFlower flows'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: string(workbookContent)
  }
}

output workspaceId string = workspace.id
output appInsightsName string = appInsights.name
output appInsightsId string = appInsights.id
output appInsightsConnectionString string = appInsights.properties.ConnectionString
output workbookId string = workbook.id
