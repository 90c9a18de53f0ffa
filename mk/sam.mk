# SAM targets, included by the top-level Makefile (which defines VENV, BIN, LOCAL, PYTHON,
# SETUP_STAMP and exports AWS_REGION and SAM_CLI_TELEMETRY=0). See docs/build.md.
#   make wheelhouse     the layer's arm64/cp313 wheels into .local/wheelhouse (for offline builds)
#   make sam-validate   sam validate --lint, cfn-lint, then checkov
#   make sam-build      sam build into .aws-sam/build (no Docker), offline from the wheelhouse
#   make checkov        checkov on template.yaml and on the template as deployed (no network)
#   make checkov-install  checkov in its own venv, .local/checkov (see below why not in .venv)

LAYER_SRC := layers/minutemeter
WHEELHOUSE := $(LOCAL)/wheelhouse
WHEELHOUSE_STAMP := $(WHEELHOUSE)/.requirements.txt

# pip for `pip download`: the venv's when it exists, else the interpreter that makes the venv.
# (Recursive `=`: decided when the recipe runs, e.g. after `make setup` made the venv.)
WHEELHOUSE_PYTHON = $(if $(wildcard $(BIN)/python),$(abspath $(BIN)/python),$(PYTHON))

# What the layer Makefile reads (via sam build's environment).
SAM_BUILD_ENV = MINUTEMETER_WHEELHOUSE=$(abspath $(WHEELHOUSE)) MINUTEMETER_PYTHON=$(abspath $(BIN)/python)

# checkov pins boto3 exactly (3.3.30: boto3==1.35.49) and so does aws-sam-cli (1.170.0:
# boto3==1.43.108): pip cannot install both into one venv. checkov gets a venv of its own, pinned
# here; a new version may add checks, so it is bumped on purpose, not by `pip install -U`.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := $(LOCAL)/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.checkov-$(CHECKOV_VERSION)
CHECKOV_OUT := .aws-sam/checkov
# Offline: no platform API key (so no upload), --skip-download (no policy metadata from the
# platform), no check for a newer checkov on PyPI. `make checkov` runs as well in `unshare -n`.
CHECKOV_RUN = env -u BC_API_KEY -u PRISMA_API_URL CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE \
	$(CHECKOV) --framework cloudformation --skip-download --compact --quiet
# The template as deployed: Fn::ForEach expanded (SAM CLI) and the SAM transform applied
# (samtranslator), so that checkov sees the schedules and the generated collector role. The token
# parameters are set so that the conditional secret, parameter and key grants are scanned too, and
# AlarmTopicArn so that the alarms' actions are.
CHECKOV_PARAMETERS := \
	--parameter SourceIds=node-a,node_b \
	--parameter ExporterTokenSecretArns=arn:aws:secretsmanager:us-east-1:123456789012:secret:minutemeter/node-a-AbCdEf \
	--parameter ExporterTokenParameterArns=arn:aws:ssm:us-east-1:123456789012:parameter/minutemeter/node-b \
	--parameter ExporterTokenKmsKeyArns=arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab \
	--parameter AlarmTopicArn=arn:aws:sns:us-east-1:123456789012:minutemeter-alarms

.PHONY: wheelhouse sam-validate sam-build checkov checkov-install

wheelhouse: $(WHEELHOUSE_STAMP)

# Re-downloaded when the layer's requirements change; the stamp is a copy of them.
$(WHEELHOUSE_STAMP): $(LAYER_SRC)/requirements.txt
	$(MAKE) --no-print-directory -f $(LAYER_SRC)/Makefile wheelhouse \
		MINUTEMETER_WHEELHOUSE=$(abspath $(WHEELHOUSE)) MINUTEMETER_PYTHON=$(WHEELHOUSE_PYTHON)
	cp $< $@

sam-validate: $(SETUP_STAMP)
	$(BIN)/sam validate --lint
	$(BIN)/cfn-lint template.yaml
	$(MAKE) --no-print-directory checkov

checkov-install: $(CHECKOV_STAMP)

$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	rm -f $(CHECKOV_VENV)/.checkov-*
	touch $@

checkov: $(SETUP_STAMP) $(CHECKOV_STAMP)
	$(CHECKOV_RUN) --file template.yaml
	mkdir -p $(CHECKOV_OUT)
	$(BIN)/python -m tests.template.sam_expand --translate $(CHECKOV_PARAMETERS) template.yaml \
		> $(CHECKOV_OUT)/deployed.json
	$(CHECKOV_RUN) --file $(CHECKOV_OUT)/deployed.json

sam-build: $(SETUP_STAMP) wheelhouse
	$(SAM_BUILD_ENV) $(BIN)/sam build
