"""Translates template.yaml with AWS's own SAM translator (aws-sam-translator, the code
`sam deploy` runs in CloudFormation's SAM transform) for several parameter sets, resolves
the conditions each set makes true, and checks what matters in the result: the least
privilege of each role, the event source settings, the alarms and where they notify, the
retention of what holds events, the Rules. Exits 1 naming each failed check."""

import copy
import logging
import os
import sys
from pathlib import Path

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
ACCOUNT, REGION, PARTITION, STACK = "123456789012", "eu-west-1", "aws", "crm-hooks"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": PARTITION,
    "AWS::StackName": STACK,
}
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:twenty-webhook-AbCdEf"
RULES_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:twenty-rules-AbCdEf"
KMS_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:pager"
# The translator asks boto for the region; no credentials and no call are needed.
os.environ["AWS_DEFAULT_REGION"] = REGION
# The translator's own usage metrics warn when not published; they are not ours.
logging.disable(logging.WARNING)


class Policies:
    """The managed policies SAM attaches by name, without asking IAM."""

    def load(self):
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSLambdaSQSQueueExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
        }


NO_VALUE = object()


class Resolver:
    """Evaluates the intrinsic functions that depend on parameters alone."""

    def __init__(self, template, params):
        self.template = template
        self.params = {
            name: str(params.get(name, spec.get("Default", "")))
            for name, spec in template.get("Parameters", {}).items()
        }
        for name, spec in template.get("Parameters", {}).items():
            if spec.get("Type") == "CommaDelimitedList":
                self.params[name] = [x.strip() for x in self.params[name].split(",")]
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = self.truth(self.template["Conditions"][name])
        return self.conditions[name]

    def truth(self, node):
        (fn, args), = node.items()
        if fn == "Fn::Equals":
            a, b = (self.value(x) for x in args)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not self.truth(args[0])
        if fn == "Fn::And":
            return all(self.truth(a) for a in args)
        if fn == "Fn::Or":
            return any(self.truth(a) for a in args)
        if fn == "Condition":
            return self.condition(args)
        if fn == "Fn::Contains":
            among, one = args
            return str(self.value(one)) in [str(x) for x in self.value(among)]
        raise ValueError(f"unknown condition function {fn}")

    def value(self, node):
        if isinstance(node, list):
            out = [self.value(x) for x in node]
            return [x for x in out if x is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, args), = node.items()
            if fn == "Ref" and args in self.params:
                return self.params[args]
            if fn == "Ref" and args in PSEUDO:
                return PSEUDO[args]
            if fn == "Ref" and args == "AWS::NoValue":
                return NO_VALUE
            if fn == "Fn::If":
                name, yes, no = args
                return self.value(yes if self.condition(name) else no)
            if fn == "Fn::Join":
                sep, items = args
                return sep.join(str(x) for x in self.value(items))
            if fn == "Fn::FindInMap":
                m, k1, k2 = (self.value(x) for x in args)
                return self.template["Mappings"][m][str(k1)][k2]
            if fn == "Fn::Sub" and isinstance(args, str):
                text = args
                for name, v in {**self.params, **PSEUDO}.items():
                    if isinstance(v, str):
                        text = text.replace("${" + name + "}", v)
                return text
        out = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}

    def resources(self):
        live = {}
        for name, res in self.template["Resources"].items():
            if "Condition" in res and not self.condition(res["Condition"]):
                continue
            live[name] = self.value(res)
        return live

    def outputs(self):
        return {
            name: self.value(out["Value"])
            for name, out in self.template.get("Outputs", {}).items()
            if "Condition" not in out or self.condition(out["Condition"])
        }


TRANSLATED = []


def translate(params):
    TRANSLATED.append(params)
    template = yaml_parse(TEMPLATE.read_text())
    packaged = copy.deepcopy(template)
    # What `sam build` and `sam deploy` do first: the code uploaded, its S3 address in place.
    packaged["Globals"]["Function"]["CodeUri"] = "s3://artifacts/twenty-webhook.zip"
    out = transform(packaged, params, Policies())
    return template, Resolver(out, params)


def statements(resources, role):
    found = []
    for policy in resources[role]["Properties"].get("Policies", []):
        found.extend(policy["PolicyDocument"]["Statement"])
    return found


def actions(statements_):
    out = {}
    for s in statements_:
        acts = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        for a in acts:
            out.setdefault(a, []).append(s["Resource"])
    return out


FAILURES = []


def expect(ok, what):
    if not ok:
        FAILURES.append(what)


def rule_holds(template, resolver, rule):
    spec = template["Rules"][rule]
    if "RuleCondition" in spec and not resolver.truth(spec["RuleCondition"]):
        return True
    return all(resolver.truth(a["Assert"]) for a in spec["Assertions"])


def check_stored_secrets_with_email():
    params = {
        "WebhookSecretParameter": "/twenty/webhook-secret",
        "ForwardRulesParameter": "/twenty/forward-rules",
        "AlarmEmail": "ops@example.com",
    }
    template, r = translate(params)
    res = r.resources()
    web = actions(statements(res, "WebhookFunctionRole"))
    expect(web.get("ssm:GetParameter") == [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/twenty/webhook-secret"],
           f"ingest reads exactly its parameter: {web.get('ssm:GetParameter')}")
    expect("secretsmanager:GetSecretValue" not in web and "kms:Decrypt" not in web,
           "ingest has no Secrets Manager or KMS grant it does not need")
    expect(set(web) == {"sqs:SendMessage", "ssm:GetParameter"}, f"ingest actions: {sorted(web)}")
    worker = actions(statements(res, "WorkerFunctionRole"))
    expect(worker.get("ssm:GetParameter") == [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/twenty/forward-rules"],
           "the worker reads exactly the rules parameter")
    expect(worker.get("sqs:SendMessage") == [{"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}],
           f"the worker sends to the dead-letter queue only: {worker.get('sqs:SendMessage')}")
    wenv = res["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    expect(wenv["DEAD_LETTER_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}, "the worker moves to the DLQ")
    expect(str(wenv["RETRY_HORIZON_SECS"]) == "86400", f"a day's horizon: {wenv['RETRY_HORIZON_SECS']}")
    redrive = res["EventQueue"]["Properties"]["RedrivePolicy"]
    expect(str(redrive["maxReceiveCount"]) == "1000", f"the receive count is a backstop: {redrive}")
    expect(str(wenv["MAX_RECEIVE_COUNT"]) == str(redrive["maxReceiveCount"]),
           "the worker knows the queue's maxReceiveCount, to move a message before SQS does")
    for name in ["EventQueue", "DeadLetterQueue"]:
        expect(str(res[name]["Properties"]["MessageRetentionPeriod"]) == "1209600",
               f"{name} keeps 14 days: the horizon and time to redrive")
    expect("dynamodb:PutItem" in worker, "the worker writes its idempotency table")

    fn = res["WebhookFunction"]["Properties"]
    env = fn["Environment"]["Variables"]
    expect(env["TWENTY_WEBHOOK_SECRET_PARAMETER"] == "/twenty/webhook-secret", "the parameter is passed")
    expect(env["TWENTY_WEBHOOK_SECRET"] == "", "no secret value in the environment")
    expect(env["METRICS_SERVICE"] == STACK, "metrics carry the stack's name")
    expect(fn["ReservedConcurrentExecutions"] == "25", f"reserved concurrency: {fn.get('ReservedConcurrentExecutions')}")
    expect(fn["Timeout"] == 30 and env["TWENTY_WEBHOOK_RETRY_BUDGET_MS"] == 20000,
           "the default budget of 20 s gets a 30 s timeout")
    expect(fn["Architectures"] == ["arm64"], "arm64 by default")
    expect(fn["LoggingConfig"]["LogFormat"] == "JSON", "JSON logs")

    mapping = [v for v in res.values() if v["Type"] == "AWS::Lambda::EventSourceMapping"]
    expect(len(mapping) == 1, "one event source")
    if mapping:
        p = mapping[0]["Properties"]
        expect(p["FunctionResponseTypes"] == ["ReportBatchItemFailures"], "partial batch failures")
        expect(p["BatchSize"] == "10" and p["ScalingConfig"]["MaximumConcurrency"] == "5",
               f"event source sizes: {p}")

    alarms = {k: v for k, v in res.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    expect(len(alarms) == 11, f"eleven alarms: {sorted(alarms)}")
    expect("BreakerOpenAlarm" in alarms, "an alarm on an open breaker")
    in_flight = alarms["InFlightAlarm"]["Properties"]
    expect(in_flight["MetricName"] == "ApproximateNumberOfMessagesNotVisible"
           and in_flight["Threshold"] < 120000,
           "an alarm before SQS's 120,000 in-flight messages")
    expect("RulesNotAppliedAlarm" in alarms, "an alarm on stored rules that were not applied")
    for name, alarm in alarms.items():
        expect(alarm["Properties"].get("AlarmActions") == [{"Ref": "AlarmTopic"}],
               f"{name} pages the e-mail topic")
    expect(res["AlarmTopic"]["Properties"]["Subscription"][0]["Endpoint"] == "ops@example.com",
           "the e-mail is subscribed")
    # CloudWatch cannot publish to a topic under the AWS-managed SNS key.
    expect(res["AlarmTopic"]["Properties"].get("KmsMasterKeyId") == {"Ref": "AlarmTopicKey"},
           f"the topic uses the stack's key: {res['AlarmTopic']['Properties'].get('KmsMasterKeyId')}")
    key = res["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [st for st in key if st.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"]
    expect(len(cloudwatch) == 1 and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"},
           f"CloudWatch may use the key: {key}")
    expect("Dashboard" in res, "a dashboard")
    body = res["Dashboard"]["Properties"]["DashboardBody"]
    expect(isinstance(body, dict) and "Fn::Sub" in body, "the dashboard body is substituted")
    for name in ["EventQueue", "DeadLetterQueue", "IdempotencyTable"]:
        expect(res[name].get("DeletionPolicy") == "Retain" and res[name].get("UpdateReplacePolicy") == "Retain",
               f"{name} is retained")
    url = [v for v in res.values() if v["Type"] == "AWS::Lambda::Url"]
    expect(len(url) == 1 and url[0]["Properties"]["AuthType"] == "NONE", "a public Function URL")
    for rule in template["Rules"]:
        expect(rule_holds(template, r, rule), f"rule {rule} holds")


def check_targets_get_exactly_their_grants():
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:won-deals"
    buses = [f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/crm"]
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:copies.fifo"
    template, r = translate({
        "WebhookSecret": "s", "ForwardRules": "[]",
        "TargetStateMachineArns": machine, "TargetEventBusArns": ",".join(buses),
        "TargetQueueArns": queue,
    })
    worker = actions(statements(r.resources(), "WorkerFunctionRole"))
    expect(worker.get("states:StartExecution") == [[machine]], f"StartExecution on the machine only: {worker.get('states:StartExecution')}")
    expect(worker.get("events:PutEvents") == [buses], f"PutEvents on the buses only: {worker.get('events:PutEvents')}")
    expect(worker.get("sqs:SendMessage") == [{"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}, [queue]],
           f"SendMessage on the DLQ and the target queue only: {worker.get('sqs:SendMessage')}")
    template, r = translate({"WebhookSecret": "s", "ForwardRules": "[]"})
    worker = actions(statements(r.resources(), "WorkerFunctionRole"))
    expect("states:StartExecution" not in worker and "events:PutEvents" not in worker,
           "no target grants without targets")
    expect("ssm:GetParameter" not in worker and "secretsmanager:GetSecretValue" not in worker,
           f"no secret reads without stored rules or destination credentials: {worker}")


def check_destination_credentials_get_exactly_their_grants():
    parameters = [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/n8n/key",
                  f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/crm/password"]
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hubspot-client-??????"
    template, r = translate({
        "WebhookSecret": "s", "ForwardRules": "[]",
        "DestinationParameterArns": ",".join(parameters), "DestinationSecretArns": secret,
    })
    worker = actions(statements(r.resources(), "WorkerFunctionRole"))
    expect(worker.get("ssm:GetParameter") == [parameters],
           f"GetParameter on the destinations' parameters only: {worker.get('ssm:GetParameter')}")
    expect(worker.get("secretsmanager:GetSecretValue") == [[secret]],
           f"GetSecretValue on the destination's secret only: {worker.get('secretsmanager:GetSecretValue')}")


def check_outputs_give_twenty_admin_what_it_reads():
    """`twenty-admin --stack` reads where the secret is, the refresh and whether a token is
    needed from the outputs; the token itself must never be one."""
    _, r = translate({**GIVEN_STORED, "WebhookUrlToken": "tok_0123456789abcdef", "SecretRefreshSeconds": "60"})
    out = r.outputs()
    expect(out.get("WebhookSecretParameterName") == "/twenty/webhook-secret", f"the parameter's name: {out}")
    expect("WebhookSecretId" not in out, "no secret id without one")
    expect(str(out.get("SecretRefreshSeconds")) == "60", f"the refresh: {out.get('SecretRefreshSeconds')}")
    expect(out.get("WebhookUrlTokenRequired") == "true", "a token is required")
    expect(not any("tok_0123456789abcdef" in str(v) for v in out.values()), "the token is no output")
    _, r = translate({"WebhookSecretArn": SECRET_ARN, "ForwardRules": "[]"})
    out = r.outputs()
    expect(out.get("WebhookSecretId") == SECRET_ARN and "WebhookSecretParameterName" not in out,
           f"the secret's ARN alone: {out}")
    expect(out.get("WebhookUrlTokenRequired") == "false", "no token, none required")


def check_secrets_manager_kms_fifo_bucket_topic():
    params = {
        "WebhookSecretArn": SECRET_ARN,
        "ForwardRulesSecretArn": RULES_ARN,
        "SecretKmsKeyArn": KMS_ARN,
        "Architecture": "x86_64",
        "WebhookReservedConcurrency": "-1",
        "Idempotency": "false",
        "PayloadBucket": "true",
        "FifoQueue": "true",
        "RetryBudgetSeconds": "890",
        "RetryHorizonHours": "168",
        "AlarmTopicArn": TOPIC_ARN,
    }
    template, r = translate(params)
    res = r.resources()
    web = actions(statements(res, "WebhookFunctionRole"))
    expect(web.get("secretsmanager:GetSecretValue") == [SECRET_ARN], "ingest reads exactly its secret")
    expect(web.get("kms:Decrypt") == [KMS_ARN], "ingest decrypts with the given key only")
    kms = [s for s in statements(res, "WebhookFunctionRole") if s["Action"] == ["kms:Decrypt"]]
    expect(bool(kms) and "kms:ViaService" in kms[0].get("Condition", {}).get("StringEquals", {}),
           "KMS use only through SSM or Secrets Manager")
    expect("ssm:GetParameter" not in web, "no SSM grant without a parameter")
    expect(web.get("s3:PutObject") is not None, "ingest stores large events")
    worker = actions(statements(res, "WorkerFunctionRole"))
    expect(worker.get("secretsmanager:GetSecretValue") == [RULES_ARN], "the worker reads exactly the rules secret")
    expect(not any(a.startswith("dynamodb:") for a in worker), "no table, no DynamoDB grant")
    fn = res["WebhookFunction"]["Properties"]
    expect("ReservedConcurrentExecutions" not in fn, "-1 reserves nothing")
    expect(fn["Architectures"] == ["x86_64"], "x86_64 when asked")
    expect(fn["Timeout"] == 900, "the longest budget gets Lambda's longest timeout")
    expect("IdempotencyTable" not in res and "EventPayloadBucket" in res, "bucket, no table")
    expect(res["EventPayloadBucket"].get("DeletionPolicy") == "Retain", "the bucket is retained")
    expect(res["EventQueue"]["Properties"]["FifoQueue"] is True, "FIFO queue")
    horizon = res["WorkerFunction"]["Properties"]["Environment"]["Variables"]["RETRY_HORIZON_SECS"]
    expect(str(horizon) == "604800", f"a week's horizon: {horizon}")
    expect("AlarmTopic" not in res, "no topic is made when one is given")
    for name, alarm in res.items():
        if alarm["Type"] == "AWS::CloudWatch::Alarm":
            expect(alarm["Properties"].get("AlarmActions") == [TOPIC_ARN], f"{name} pages the given topic")
    for rule in template["Rules"]:
        expect(rule_holds(template, r, rule), f"rule {rule} holds")


# A secret and rules, so that only the rule a case is about can refuse it.
GIVEN = {"WebhookSecret": "s", "ForwardRules": "[]"}
GIVEN_STORED = {"WebhookSecretParameter": "/twenty/webhook-secret", "ForwardRules": "[]"}


def check_rules_refuse_missing_or_double_sources():
    cases = [
        ({"ForwardRules": "[]"}, "WebhookSecretGiven"),
        ({"WebhookSecret": "s", "WebhookSecretParameter": "/p", "ForwardRules": "[]"}, "OneWebhookSecretSource"),
        ({"WebhookSecret": "s"}, "ForwardRulesGiven"),
        ({"WebhookSecret": "s", "ForwardRules": "[]", "ForwardRulesSecretArn": RULES_ARN}, "OneForwardRulesSource"),
        ({**GIVEN, "WorkerBatchSize": "100"}, "WorkerBatchAboveTenNeedsAWindow"),
        ({**GIVEN, "FifoQueue": "true", "WorkerBatchingWindowSeconds": "5"}, "FifoWorkerBatch"),
        ({**GIVEN, "FifoQueue": "true", "WorkerBatchSize": "11", "WorkerBatchingWindowSeconds": "1"}, "FifoWorkerBatch"),
    ]
    for params, broken in cases:
        template, r = translate(params)
        expect(not rule_holds(template, r, broken), f"{broken} refuses {params}")
        others = [rule for rule in template["Rules"] if rule != broken]
        expect(all(rule_holds(template, r, rule) for rule in others), f"only {broken} refuses {params}")
    for params in [
        {**GIVEN, "WorkerBatchSize": "100", "WorkerBatchingWindowSeconds": "1"},
        {**GIVEN, "WorkerBatchSize": "10"},
        {**GIVEN, "FifoQueue": "true", "WorkerBatchSize": "10"},
    ]:
        template, r = translate(params)
        expect(all(rule_holds(template, r, rule) for rule in template["Rules"]), f"every rule holds for {params}")
    template, r = translate({**GIVEN, "AlarmEmail": "ops@example.com", "AlarmTopicEncryption": "none"})
    res = r.resources()
    expect("AlarmTopicKey" not in res and "KmsMasterKeyId" not in res["AlarmTopic"]["Properties"],
           "AlarmTopicEncryption=none: an unencrypted topic, no key")
    template, r = translate({"AllowUnsigned": "true", "WebhookUrlToken": "t" * 20, "ForwardRules": "[]"})
    expect(rule_holds(template, r, "WebhookSecretGiven"), "unsigned deliveries need no secret")
    res = r.resources()
    alarms = [v for v in res.values() if v["Type"] == "AWS::CloudWatch::Alarm"]
    expect(all("AlarmActions" not in a["Properties"] for a in alarms), "no topic: the alarms notify no one")


def check_reconciliation():
    params = {
        "WebhookSecretParameter": "/twenty/webhook-secret",
        "ForwardRulesParameter": "/twenty/forward-rules",
        "Reconciliation": "true",
        "TwentyApiUrl": "https://api.twenty.com",
        "TwentyApiKeyParameter": "/twenty/api-key",
    }
    template, r = translate(params)
    res = r.resources()
    expect("ReconcileFunction" in res, "reconciliation adds its function")
    role = actions(statements(res, "ReconcileFunctionRole"))
    expect(set(role) == {"sqs:SendMessage", "dynamodb:GetItem", "dynamodb:PutItem",
                         "dynamodb:BatchGetItem", "ssm:GetParameter"},
           f"the reconciler's actions: {sorted(role)}")
    expect(role.get("ssm:GetParameter") == [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/twenty/api-key"],
           "the reconciler reads exactly the API key parameter")
    fn = res["ReconcileFunction"]["Properties"]
    expect(fn["ReservedConcurrentExecutions"] == 1, "runs never overlap")
    expect(fn["Environment"]["Variables"]["TWENTY_API_KEY"] == "", "no key in the environment")
    rules = [v for v in res.values() if v["Type"] == "AWS::Events::Rule"]
    expect(len(rules) == 1 and rules[0]["Properties"]["ScheduleExpression"] == "rate(15 minutes)",
           f"a schedule: {rules}")
    alarms = [k for k, v in res.items() if v["Type"] == "AWS::CloudWatch::Alarm"]
    expect("ReconcileErrorsAlarm" in alarms and len(alarms) == 12, f"twelve alarms: {alarms}")
    keeps_failing = res["ReconcileErrorsAlarm"]["Properties"]
    expect((keeps_failing["EvaluationPeriods"], keeps_failing["DatapointsToAlarm"]) == (2, 2),
           "the reconciliation alarm waits for failures in two periods running")
    invoke = [v["Properties"] for v in res.values() if v["Type"] == "AWS::Lambda::EventInvokeConfig"]
    expect(len(invoke) == 1 and invoke[0]["MaximumRetryAttempts"] == 0,
           f"a failed scheduled run is not retried at once: {invoke}")
    for rule in template["Rules"]:
        expect(rule_holds(template, r, rule), f"rule {rule} holds with reconciliation")
    for broken in [{"TwentyApiUrl": ""}, {"Idempotency": "false"}, {"TwentyApiKeyParameter": ""}]:
        template, r = translate({**params, **broken})
        expect(not rule_holds(template, r, "ReconciliationSettings"),
               f"ReconciliationSettings refuses {broken}")
    template, r = translate({"WebhookSecret": "s", "ForwardRules": "[]"})
    expect("ReconcileFunction" not in r.resources(), "off by default")
    expect("RulesNotAppliedAlarm" not in r.resources(), "rules in the environment need no such alarm")


def main():
    check_reconciliation()
    check_stored_secrets_with_email()
    check_secrets_manager_kms_fifo_bucket_topic()
    check_rules_refuse_missing_or_double_sources()
    check_targets_get_exactly_their_grants()
    check_destination_credentials_get_exactly_their_grants()
    check_outputs_give_twenty_admin_what_it_reads()
    if FAILURES:
        print("template checks failed:\n  " + "\n  ".join(FAILURES), file=sys.stderr)
        sys.exit(1)
    print(f"template.yaml: translated for {len(TRANSLATED)} parameter sets; roles, event source, alarms, retention and rules as expected")


if __name__ == "__main__":
    main()
