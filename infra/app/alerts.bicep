// Alert rules on the app's telemetry, and the action group that e-mails them (docs/operations.md
// says what each one means and what to do about it). main.bicep deploys this module only when
// alertEmail is given: a rule that tells no one would still be billed every month.
//
// Every rule is a log search alert (scheduledQueryRules) scoped to the Application Insights
// component, so its query uses Application Insights' table and column names (requests,
// customMetrics, customDimensions...), the same ones as the workbook and docs/operations.md.
// A metric is a customMetrics row whose name is the instrument's (shared/telemetry/names.py);
// counters arrive as deltas, so a counter's count over a window is sum(valueSum). Each query
// applies its own threshold and returns one row per problem; the rule fires when it returns any
// (timeAggregation Count, GreaterThan 0), and resolves by itself once a run returns none.
// tests/test_alerts.py holds every name in these queries to what the app emits.

@description('Azure region of the rules.')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('Resource id of the Application Insights component the rules query.')
param applicationInsightsId string

@description('Name of the action group.')
param actionGroupName string

@description('Prefix of the alert rules\' names.')
param ruleNamePrefix string

@description('Address the alerts are e-mailed to.')
param alertEmail string

@minValue(10)
@maxValue(1440)
@description('Minutes without progress after which a broadcast counts as stuck: broadcast_send kept working (deferring, retrying) and settled no recipient.')
param stuckBroadcastMinutes int = 30

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'twilio-app' // at most 12 characters; it starts the subject of every e-mail
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Anything on the poison queue: broadcast_poison ran (a broadcast-sends message failed all its
// tries), or it recorded recipients as failed.
var poisonQuery = '''
union
    (requests
    | where operation_Name == "broadcast_poison"
    | project timestamp),
    (customMetrics
    | where name == "broadcast.poisoned"
    | where valueSum > 0
    | project timestamp)
| summarize poisoned = count()
| where poisoned > 0
'''

// The failure rate of each function: at least 10 invocations in the window and 10% or more of them
// failed (an exception, a timeout, a 5xx answer, or a webhook that could only answer its safe
// TwiML: a malformed setting, a refused call flow; Twilio got a 200, app.webhook_failures counts
// it). 4xx answers are refusals, not failures.
var failureRateQuery = '''
union
    (requests
    | project functionName = operation_Name, invocations = 1, failures = iff(success == false or toint(resultCode) >= 500, 1, 0)),
    (customMetrics
    | where name == "app.webhook_failures"
    | project functionName = tostring(customDimensions["app.function"]), invocations = 0, failures = toint(valueSum))
| summarize invocations = sum(invocations), failures = sum(failures) by functionName
| extend failurePercent = round(100.0 * failures / invocations, 1)
| where invocations >= 10 and failurePercent >= 10
'''

// Twilio's 4xx and 5xx answers: at least 5 in the window and 10% or more of the attempts (creates
// plus errors). 429s are left out: the app waits and tries again (the workbook shows them).
var twilioErrorsQuery = '''
customMetrics
| where name in ("twilio.errors", "twilio.creates")
| extend status = toint(customDimensions["http.response.status_code"])
| extend code = tostring(customDimensions["twilio.error_code"])
| summarize errors = sumif(valueSum, name == "twilio.errors" and coalesce(status, 0) != 429),
    creates = sumif(valueSum, name == "twilio.creates"),
    codes = make_set_if(code, name == "twilio.errors" and coalesce(status, 0) != 429, 20)
| extend errorPercent = round(100.0 * errors / (errors + creates), 1)
| where errors >= 5 and errorPercent >= 10
'''

// A broadcast with no progress: over the whole window broadcast_send kept working (it ran, took
// messages off the queue, deferred sends) and not one recipient was settled (sent, failed or
// refused).
var stuckBroadcastQuery = '''
union
    (requests
    | where operation_Name == "broadcast_send"
    | project working = 1.0, settled = 0.0),
    (customMetrics
    | where name in ("broadcast.deferrals", "broadcast.queue_age")
    | project working = todouble(valueCount), settled = 0.0),
    (customMetrics
    | where name == "broadcast.sends"
    | project working = 0.0, settled = valueSum)
| summarize working = sum(working), settled = sum(settled)
| where working > 0 and settled == 0
'''

// Storage unavailable (503s and other failed answers, mostly), by service: at least 5 in the window.
var storageQuery = '''
customMetrics
| where name == "storage.unavailable"
| summarize failures = sum(valueSum) by service = tostring(customDimensions["storage.service"]), status = tostring(customDimensions["http.response.status_code"])
| where failures >= 5
'''

var rules = [
  {
    key: 'poison-queue'
    displayName: 'Broadcast messages on the poison queue'
    description: 'A broadcast-sends message exhausted its tries and landed on broadcast-sends-poison; its recipients are recorded as failed. GET /api/broadcasts/{id} lists them (docs/operations.md).'
    severity: 1
    query: poisonQuery
    windowSize: 'PT15M'
    dimensions: []
  }
  {
    key: 'function-failures'
    displayName: 'Function failure rate'
    description: '10% or more of a function\'s invocations failed (exception, timeout, 5xx, or a webhook\'s safe answer) in 15 minutes, with at least 10 invocations (docs/operations.md).'
    severity: 1
    query: failureRateQuery
    windowSize: 'PT15M'
    dimensions: [
      {
        name: 'functionName'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
  {
    key: 'twilio-errors'
    displayName: 'Twilio 4xx/5xx error rate'
    description: 'Twilio refused or failed 10% or more of the app\'s requests (429s aside) in 15 minutes, at least 5 of them; the alert lists the Twilio error codes (docs/operations.md).'
    severity: 2
    query: twilioErrorsQuery
    windowSize: 'PT15M'
    dimensions: []
  }
  {
    key: 'stuck-broadcast'
    displayName: 'Broadcast without progress'
    description: 'broadcast_send kept working for ${stuckBroadcastMinutes} minutes (deferring, retrying) without settling a single recipient (docs/operations.md).'
    severity: 2
    query: stuckBroadcastQuery
    windowSize: 'PT${stuckBroadcastMinutes}M'
    dimensions: []
  }
  {
    key: 'storage-unavailable'
    displayName: 'Storage unavailable'
    description: 'Table or queue storage failed the app 5 times or more in 15 minutes (503s, mostly); the app answered 503 and Twilio or the queue tries again (docs/operations.md).'
    severity: 1
    query: storageQuery
    windowSize: 'PT15M'
    dimensions: [
      {
        name: 'service'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'status'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in rules: {
  name: '${ruleNamePrefix}-${rule.key}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: rule.windowSize
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: rule.dimensions // one alert for each value (function, service)
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

output actionGroupId string = actionGroup.id
