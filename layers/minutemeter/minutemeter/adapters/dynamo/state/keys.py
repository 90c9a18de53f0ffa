"""Every key of the state table, one function (or constant) per kind of item.

Keys::

    source config    pk = SOURCES                sk = <source_id>
    sync state       pk = SOURCE#<source_id>     sk = STATE   (watermark, identity, lease, health)
    checkpoint page  pk = CPP#<source_id>        sk = <len(node_id)>:<node_id>#<depth>#<index>
    checkpoint (old) pk = CP#<source_id>         sk = <node_id>#<account_id>   (read, not written)
    profile          pk = PROFILE#<account_id>   sk = PROFILE
    quarantine       pk = LOG#<source_id>#quarantine
                                                 sk = <taken_at>#<digest>   (expires)
    reset            pk = LOG#<source_id>#reset  sk = <taken_at>#<node_id>#<account_id> (expires)
    job              pk = JOB#<source_id>        sk = <started_at>#<job_id>   (expires)
    reconcile run    pk = RECONCILE#<source_id>  sk = RUN#<started_at>#<run_id>
    reconcile resume pk = RECONCILE#<source_id>  sk = PROGRESS#<reconcile_id>
    reconciled acct  pk = RECONCILE#<source_id>  sk = ACCOUNT#<account_id>
    clock verdict    pk = CLOCK                  sk = LATEST
    billing sink     pk = SINKS                  sk = <sink name>
    delivery record  pk = DELIVERY#<sink>#<ledger_id>  sk = DELIVERY   (one per sink and entry)

Times in sort keys are fixed-width RFC 3339 (``format_instant``), so a partition sorts in time
order and a newest-first Query reads the latest items first; a quarantine record's
``taken_at`` is the exporter's own text (it may not parse). docs/design.md, "What is stored",
has the same table with what writes each item.
"""

from __future__ import annotations

from datetime import datetime

from minutemeter.domain.timeutil import format_instant

Key = dict[str, str]

SOURCES_PK = "SOURCES"
SINKS_PK = "SINKS"
VERDICT_KEY: Key = {"pk": "CLOCK", "sk": "LATEST"}
RUN_PREFIX = "RUN#"
ACCOUNT_PREFIX = "ACCOUNT#"


# -- sources and their sync state -------------------------------------------------------------
def source_key(source_id: str) -> Key:
    """The registry record of a source."""
    return {"pk": SOURCES_PK, "sk": source_id}


def state_key(source_id: str) -> Key:
    """The sync-state item of a source: watermark, identity, lease, last job, health."""
    return {"pk": f"SOURCE#{source_id}", "sk": "STATE"}


def job_partition(source_id: str) -> str:
    """The partition of a source's job results."""
    return f"JOB#{source_id}"


def job_key(source_id: str, started_at: datetime, job_id: str) -> Key:
    return {"pk": job_partition(source_id), "sk": f"{format_instant(started_at)}#{job_id}"}


# -- checkpoints and profiles -----------------------------------------------------------------
def checkpoint_partition(source_id: str) -> str:
    """The partition of a source's checkpoints (one item per node and account)."""
    return f"CP#{source_id}"


def checkpoint_key(source_id: str, node_id: str, account_id: str) -> Key:
    return {"pk": checkpoint_partition(source_id), "sk": f"{node_id}#{account_id}"}


def checkpoint_page_partition(source_id: str) -> str:
    """The partition of a source's checkpoint pages (:mod:`.checkpoints`)."""
    return f"CPP#{source_id}"


def checkpoint_page_prefix(node_id: str) -> str:
    """The sort-key prefix of a node's pages: length-prefixed, so no node's is another's."""
    return f"{len(node_id)}:{node_id}#"


def checkpoint_page_key(source_id: str, node_id: str, depth: int, index: int) -> Key:
    """A page of checkpoints: the accounts whose hash ends in ``index`` (``depth`` bits)."""
    return {"pk": checkpoint_page_partition(source_id),
            "sk": f"{checkpoint_page_prefix(node_id)}{depth:02d}#{index:016x}"}


def profile_key(account_id: str) -> Key:
    return {"pk": f"PROFILE#{account_id}", "sk": "PROFILE"}


# -- quarantine and reset records -------------------------------------------------------------
def record_partition(source_id: str, kind: str) -> str:
    """The partition of a source's records of ``kind`` (``quarantine`` or ``reset``)."""
    return f"LOG#{source_id}#{kind}"


def quarantine_key(source_id: str, taken_at: str, digest: str) -> Key:
    """``taken_at`` as the exporter sent it; ``digest`` of the sample's content."""
    return {"pk": record_partition(source_id, "quarantine"), "sk": f"{taken_at}#{digest}"}


def reset_key(source_id: str, taken_at: datetime, node_id: str, account_id: str) -> Key:
    return {
        "pk": record_partition(source_id, "reset"),
        "sk": f"{format_instant(taken_at)}#{node_id}#{account_id}",
    }


# -- reconcile bookkeeping --------------------------------------------------------------------
def reconcile_partition(source_id: str) -> str:
    """The partition of a source's reconcile runs, progress and reconciled accounts."""
    return f"RECONCILE#{source_id}"


def reconcile_run_key(source_id: str, started_at: str, run_id: str) -> Key:
    return {"pk": reconcile_partition(source_id), "sk": f"{RUN_PREFIX}{started_at}#{run_id}"}


def reconcile_progress_key(source_id: str, reconcile_id: str) -> Key:
    return {"pk": reconcile_partition(source_id), "sk": f"PROGRESS#{reconcile_id}"}


def reconciled_account_key(source_id: str, account_id: str) -> Key:
    return {"pk": reconcile_partition(source_id), "sk": f"{ACCOUNT_PREFIX}{account_id}"}


# -- billing sinks and delivery records -------------------------------------------------------
def sink_key(name: str) -> Key:
    """The registry record of a billing sink (all sinks in one partition: one Query lists them)."""
    return {"pk": SINKS_PK, "sk": name}


def delivery_key(sink: str, ledger_id: str) -> Key:
    """The delivery record of one ledger entry to one sink: a partition of its own, so the
    conditional writes of a busy stream spread over the table."""
    return {"pk": f"DELIVERY#{sink}#{ledger_id}", "sk": "DELIVERY"}
