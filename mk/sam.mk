# SAM targets, included by the top-level Makefile (which defines VENV, BIN, LOCAL, PYTHON,
# SETUP_STAMP and exports AWS_REGION and SAM_CLI_TELEMETRY=0). See docs/build.md.
#   make wheelhouse     the layer's arm64/cp313 wheels into .local/wheelhouse (for offline builds)
#   make sam-validate   sam validate --lint, then cfn-lint
#   make sam-build      sam build into .aws-sam/build (no Docker), offline from the wheelhouse

LAYER_SRC := layers/minutemeter
WHEELHOUSE := $(LOCAL)/wheelhouse
WHEELHOUSE_STAMP := $(WHEELHOUSE)/.requirements.txt

# pip for `pip download`: the venv's when it exists, else the interpreter that makes the venv.
# (Recursive `=`: decided when the recipe runs, e.g. after `make setup` made the venv.)
WHEELHOUSE_PYTHON = $(if $(wildcard $(BIN)/python),$(abspath $(BIN)/python),$(PYTHON))

# What the layer Makefile reads (via sam build's environment).
SAM_BUILD_ENV = MINUTEMETER_WHEELHOUSE=$(abspath $(WHEELHOUSE)) MINUTEMETER_PYTHON=$(abspath $(BIN)/python)

.PHONY: wheelhouse sam-validate sam-build

wheelhouse: $(WHEELHOUSE_STAMP)

# Re-downloaded when the layer's requirements change; the stamp is a copy of them.
$(WHEELHOUSE_STAMP): $(LAYER_SRC)/requirements.txt
	$(MAKE) --no-print-directory -f $(LAYER_SRC)/Makefile wheelhouse \
		MINUTEMETER_WHEELHOUSE=$(abspath $(WHEELHOUSE)) MINUTEMETER_PYTHON=$(WHEELHOUSE_PYTHON)
	cp $< $@

sam-validate: $(SETUP_STAMP)
	$(BIN)/sam validate --lint
	$(BIN)/cfn-lint template.yaml

sam-build: $(SETUP_STAMP) wheelhouse
	$(SAM_BUILD_ENV) $(BIN)/sam build
