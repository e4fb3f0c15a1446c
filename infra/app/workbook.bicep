// An Azure Monitor workbook over the app's telemetry: the metrics in shared/telemetry/names.py
// (creates, refusals, Twilio errors, 429s and deferrals, broadcast sends a second, queue age,
// opt-outs, call-flow outcomes, storage failures), the functions' failures, and a search by SID.
// It opens from the Application Insights component (Workbooks), and costs nothing to keep.
//
// The queries use Application Insights' table and column names, as the alert rules do
// (alerts.bicep); a counter's count in a time bin is sum(valueSum), a histogram's mean is
// sum(valueSum) / sum(valueCount). {TimeRange:grain} and {Sid} are the workbook's parameters.
// tests/test_alerts.py holds every name in these queries to what the app emits.

@description('Azure region of the workbook.')
param location string

@description('Tags for the workbook.')
param tags object = {}

@description('Resource id of the Application Insights component the workbook queries.')
param applicationInsightsId string

@description('Name the workbook is listed under.')
param displayName string = 'Twilio app: operations'

var componentType = 'microsoft.insights/components'

var createsQuery = '''
customMetrics
| where name == "twilio.creates"
| summarize creates = sum(valueSum) by bin(timestamp, {TimeRange:grain}), resource = tostring(customDimensions["twilio.resource"]), functionName = tostring(customDimensions["app.function"])
| project timestamp, series = strcat(functionName, " / ", resource), creates
'''

var refusalsQuery = '''
customMetrics
| where name == "app.refusals"
| summarize refusals = sum(valueSum) by reason = tostring(customDimensions["app.refusal_reason"]), functionName = tostring(customDimensions["app.function"])
| order by refusals desc
'''

var twilioErrorsQuery = '''
customMetrics
| where name == "twilio.errors"
| summarize errors = sum(valueSum) by code = tostring(customDimensions["twilio.error_code"]), status = tostring(customDimensions["http.response.status_code"]), resource = tostring(customDimensions["twilio.resource"])
| order by errors desc
'''

var rateLimitsQuery = '''
customMetrics
| where name in ("twilio.rate_limited", "broadcast.deferrals")
| extend series = iff(name == "twilio.rate_limited", strcat("429: ", tostring(customDimensions["twilio.resource"])), strcat("deferred: ", tostring(customDimensions["broadcast.defer_reason"])))
| summarize events = sum(valueSum) by bin(timestamp, {TimeRange:grain}), series
'''

var sendsQuery = '''
let grain = {TimeRange:grain};
customMetrics
| where name == "broadcast.sends"
| summarize settled = sum(valueSum) by bin(timestamp, grain), outcome = tostring(customDimensions["broadcast.outcome"]), kind = tostring(customDimensions["broadcast.kind"])
| project timestamp, series = strcat(kind, " ", outcome), perSecond = settled / (grain / 1s)
'''

var queueAgeQuery = '''
customMetrics
| where name == "broadcast.queue_age"
| summarize meanSeconds = sum(valueSum) / sum(valueCount), maxSeconds = max(valueMax) by bin(timestamp, {TimeRange:grain})
'''

var optOutsQuery = '''
customMetrics
| where name == "optouts.changes"
| summarize changes = sum(valueSum) by bin(timestamp, {TimeRange:grain}), series = strcat(tostring(customDimensions["optout.change"]), " via ", tostring(customDimensions["optout.source"]))
'''

var flowOutcomesQuery = '''
customMetrics
| where name == "callflow.outcomes"
| summarize outcomes = sum(valueSum) by outcome = tostring(customDimensions["callflow.outcome"])
| order by outcomes desc
'''

var storageQuery = '''
customMetrics
| where name == "storage.unavailable"
| summarize failures = sum(valueSum) by bin(timestamp, {TimeRange:grain}), series = strcat(tostring(customDimensions["storage.service"]), " ", tostring(customDimensions["http.response.status_code"]))
'''

var poisonQuery = '''
union
    (requests
    | where operation_Name == "broadcast_poison"
    | summarize invocations = count() by bin(timestamp, {TimeRange:grain})),
    (customMetrics
    | where name == "broadcast.poisoned"
    | summarize recipients = sum(valueSum) by bin(timestamp, {TimeRange:grain}))
| summarize invocations = sum(invocations), recipients = sum(recipients) by timestamp
'''

// A webhook that answered its safe TwiML (a malformed setting, a refused call flow) answered 200:
// app.webhook_failures counts it with the failed invocations, as the failure rate alert does.
var failuresQuery = '''
union
    (requests
    | project functionName = operation_Name, invocations = 1, failures = iff(success == false or toint(resultCode) >= 500, 1, 0), refused = iff(toint(resultCode) between (400 .. 499), 1, 0)),
    (customMetrics
    | where name == "app.webhook_failures"
    | project functionName = tostring(customDimensions["app.function"]), invocations = 0, failures = toint(valueSum), refused = 0)
| summarize invocations = sum(invocations), failures = sum(failures), refused = sum(refused) by functionName
| extend failurePercent = round(100.0 * failures / invocations, 1)
| order by failures desc, invocations desc
'''

var sidQuery = '''
let sid = "{Sid}";
let hits = union requests, dependencies
    | where customDimensions["twilio.call_sid"] == sid or customDimensions["twilio.message_sid"] == sid or customDimensions["twilio.recording_sid"] == sid;
let creators = hits
    | extend traceparent = tostring(customDimensions["app.created_traceparent"])
    | where isnotempty(traceparent)
    | project operation_Id = tostring(split(traceparent, "-")[1]);
let operations = union (hits | project operation_Id), creators;
union requests, dependencies, traces, exceptions
| where operation_Id in (operations)
| project timestamp, itemType, operation_Name, name, resultCode, success, message,
    callSid = tostring(customDimensions["twilio.call_sid"]), messageSid = tostring(customDimensions["twilio.message_sid"]),
    broadcast = tostring(customDimensions["broadcast.id"]), idempotency = tostring(customDimensions["idempotency.outcome"]),
    operation_Id
| order by timestamp asc
'''

// One chart or table of the workbook.
var charts = [
  {
    name: 'creates'
    title: 'Calls and messages created at Twilio, by function and resource'
    query: createsQuery
    visualization: 'timechart'
    width: '50'
  }
  {
    name: 'refusals'
    title: 'Requests refused, by reason'
    query: refusalsQuery
    visualization: 'table'
    width: '50'
  }
  {
    name: 'twilio-errors'
    title: 'Twilio errors, by Twilio error code'
    query: twilioErrorsQuery
    visualization: 'table'
    width: '50'
  }
  {
    name: 'rate-limits'
    title: '429s from Twilio and deferred broadcast sends'
    query: rateLimitsQuery
    visualization: 'timechart'
    width: '50'
  }
  {
    name: 'broadcast-sends'
    title: 'Broadcast recipients settled a second, by kind and outcome'
    query: sendsQuery
    visualization: 'timechart'
    width: '50'
  }
  {
    name: 'queue-age'
    title: 'Age of broadcast-sends messages when taken (seconds)'
    query: queueAgeQuery
    visualization: 'timechart'
    width: '50'
  }
  {
    name: 'opt-outs'
    title: 'Opt-outs and opt-ins, by source'
    query: optOutsQuery
    visualization: 'timechart'
    width: '50'
  }
  {
    name: 'flow-outcomes'
    title: 'Call-flow outcomes (voicemail taken, dial answered...)'
    query: flowOutcomesQuery
    visualization: 'barchart'
    width: '50'
  }
  {
    name: 'storage'
    title: 'Storage unavailable, by service and status'
    query: storageQuery
    visualization: 'timechart'
    width: '50'
  }
  {
    name: 'poison'
    title: 'Poison queue: broadcast_poison runs and recipients given up on'
    query: poisonQuery
    visualization: 'timechart'
    width: '50'
  }
  {
    name: 'failures'
    title: 'Invocations, failures (exception, timeout, 5xx, a webhook\'s safe answer) and refusals (4xx), by function'
    query: failuresQuery
    visualization: 'table'
    width: '100'
  }
]

var introduction = {
  type: 1
  name: 'introduction'
  content: {
    json: '## Twilio app\nThe app\'s metrics and failures over the time range below. docs/operations.md in the repository says what each alert means and how to follow one call or message by its SID.'
  }
}

var timeRangeParameter = {
  type: 9
  name: 'time-range'
  content: {
    version: 'KqlParameterItem/1.0'
    style: 'pills'
    queryType: 0
    resourceType: componentType
    parameters: [
      {
        id: guid(applicationInsightsId, 'workbook', 'TimeRange')
        version: 'KqlParameterItem/1.0'
        name: 'TimeRange'
        label: 'Time range'
        type: 4
        isRequired: true
        value: {
          durationMs: 86400000
        }
        typeSettings: {
          allowCustom: true
          selectableValues: [
            {
              durationMs: 3600000 // 1 h
            }
            {
              durationMs: 14400000 // 4 h
            }
            {
              durationMs: 86400000 // 24 h
            }
            {
              durationMs: 259200000 // 72 h
            }
            {
              durationMs: 604800000 // 168 h
            }
          ]
        }
      }
    ]
  }
}

var chartItems = [for chart in charts: {
  type: 3
  name: chart.name
  customWidth: chart.width
  content: {
    version: 'KqlItem/1.0'
    title: chart.title
    query: chart.query
    size: 0
    queryType: 0
    resourceType: componentType
    timeContextFromParameter: 'TimeRange'
    visualization: chart.visualization
  }
}]

var sidSearch = [
  {
    type: 9
    name: 'sid-parameter'
    content: {
      version: 'KqlParameterItem/1.0'
      style: 'pills'
      queryType: 0
      resourceType: componentType
      parameters: [
        {
          id: guid(applicationInsightsId, 'workbook', 'Sid')
          version: 'KqlParameterItem/1.0'
          name: 'Sid'
          label: 'Call, message or recording SID'
          type: 1
          isRequired: true
        }
      ]
    }
  }
  {
    type: 3
    name: 'sid-search'
    content: {
      version: 'KqlItem/1.0'
      title: 'Everything about one SID: its create, every status callback, the broadcast it came from'
      query: sidQuery
      size: 0
      queryType: 0
      resourceType: componentType
      timeContextFromParameter: 'TimeRange'
      visualization: 'table'
    }
  }
]

var leadingItems = [
  introduction
  timeRangeParameter
]

var workbookContent = {
  version: 'Notebook/1.0'
  items: concat(leadingItems, chartItems, sidSearch)
  isLocked: false
  fallbackResourceIds: [
    applicationInsightsId
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(applicationInsightsId, 'twilio-app-operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    version: 'Notebook/1.0'
    serializedData: string(workbookContent)
  }
}

output id string = workbook.id
