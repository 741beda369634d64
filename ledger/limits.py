"""Every hard limit of the ledger, each with the reason it exists."""

# A version conflict means another writer changed an aggregate we decided against; we reload and
# decide again. A hot capped asset under N writers needs at most about N retries; past this bound
# something is wrong (a livelock or a stuck writer) and the command fails loudly instead.
SAVE_RETRY_COUNT_MAX = 64

# One line of `ledger submit` is one command; no command needs more than this, and a bound keeps a
# malformed or hostile input from exhausting memory.
SUBMIT_LINE_BYTES_MAX = 64 * 1024

# Lines per `ledger submit` run: a bound on one run's work; split bigger inputs into several files.
SUBMIT_LINES_MAX = 10_000_000

# Decimal places a quantity may carry at all (an asset's own `quantity_decimals` is at most this).
QUANTITY_DECIMALS_MAX = 18

# Digits before the decimal point: far above any real supply, and with QUANTITY_DECIMALS_MAX
# far below DECIMAL_PRECISION, so sums of many quantities stay exact.
QUANTITY_INTEGER_DIGITS_MAX = 15

# Opening a new SQLite file while another connection writes to it: retry the set-up every
# OPEN_RETRY_SECONDS for at most OPEN_LOCKED_SECONDS_MAX (the same as the busy timeout).
OPEN_RETRY_SECONDS = 0.05
OPEN_LOCKED_SECONDS_MAX = 30
OPEN_ATTEMPTS_MAX = 1000

# Bisection steps when sizing an auto top-up: 200 halvings reach any quantity's last decimal.
TOP_UP_BISECTION_STEPS = 200

# Accounts a job's outcome lists one by one (the counts cover them all); problems are cut to
# NOTE_CHARS_MAX characters. An outcome is one JSON line a person may read.
JOB_ACCOUNTS_LISTED_MAX = 1000
NOTE_CHARS_MAX = 300

# Aggregates kept in memory per Ledger (LRU): bounded so a long run over many accounts stays flat.
AGGREGATE_CACHE_SIZE = 10_000

# Decimal precision of all ledger arithmetic. Quantities have at most 15 + 18 = 33 significant
# digits (below); products with prices and haircut ratios stay exact well inside 60 digits, so no
# sum or comparison is silently rounded (Decimal's default of 28 would round them).
DECIMAL_PRECISION = 60

# Significant digits of a utilisation ratio shown in outcomes (Decimal's familiar default); the
# ratio is for people and records only: bands are decided by exact comparisons.
RATIO_DIGITS = 28

# Hours one account's interest may be settled in one go (a year): a gap longer than this means
# the accrual job has not run for a year, which must be looked at, not silently charged.
INTEREST_HOURS_PER_SETTLEMENT_MAX = 24 * 366

# Notifications pulled from the log per batch when catching a projection up (bounded memory).
PROJECTION_BATCH_SIZE = 1000

# Catch-up loops stop after this many batches in one call: a bound on every `while`.
PROJECTION_BATCHES_MAX = 10_000_000

# Assets in one `mark_prices` command, brackets in one collateral ladder.
PRICES_PER_MARK_MAX = 1000
LADDER_BRACKETS_MAX = 50

# Events between an aggregate's snapshots: loading a pool, an asset or an account replays at most
# this many events after its latest snapshot instead of its whole history (a hot pool gains an
# event per transfer). A snapshot costs one row and a load of the previous interval; 100 keeps
# that cheap while bounding every load (and every `version=` load of history) to ~100 events.
SNAPSHOT_INTERVAL = 100

# `ledger project --follow` polls the log this often: SQLite has no notifications, and a second
# is a short lag for read models while costing an idle follower one indexed query.
PROJECTION_POLL_SECONDS = 1.0

# A follower waiting for its next poll looks for a stop request this often (Ctrl-C, SIGTERM).
PROJECTION_STOP_CHECK_SECONDS = 0.1

# Events `ledger explain` lists for one request: a job's request (an accrual over every loan)
# may have caused many more; the total is reported, the list stays readable.
EXPLAIN_EVENTS_LISTED_MAX = 1000

# Events another writer may append between two of our write transactions that we apply to the
# aggregates we keep in memory; past this we forget them all and load again (one read, bounded).
TAIL_EVENTS_MAX = 1000

# Values bound in one SQLite statement (its SQLITE_MAX_VARIABLE_NUMBER is 32,766 since 3.32;
# far below it keeps statements small).
SQL_PARAMETERS_MAX = 500

# Commands decided in one transaction by `execute_batch` / `ledger submit --batch-size`: bounds
# the events held in memory before the commit and the time the log's write lock is held.
BATCH_SIZE_MAX = 10_000

# A PostgreSQL commit with at least this many events sends them and their links by COPY (two
# round trips more, ~20 µs a row less than a literal VALUES list: docs/performance.md); below it,
# events, links and COMMIT travel as one query.
POSTGRES_COPY_EVENTS_MIN = 200

# `ledger submit FILE` commits this many commands at a time unless told otherwise: large enough
# that the commit's flush is a small share of each command, small enough that a batch is quick.
SUBMIT_BATCH_SIZE_DEFAULT = 1000

# Accounts whose parts of a job (interest, risk sweep) share one write transaction: one commit
# for many accounts, while a job still records its progress as it goes (a stopped job keeps
# what it committed and a re-run skips it).
JOB_ACCOUNTS_PER_TRANSACTION = 200

# How often a SQLite writer waiting for the log's write lock tries again: short, so waiting
# writers take turns instead of one writer keeping the lock (SQLite's busy handler sleeps longer).
SQLITE_LOCK_POLL_SECONDS = 0.001

# PostgreSQL (ledger/handoff.py): a writer finding the log's lock busy queues a run of up to this
# many commands for the holder to decide (larger runs amortise their own commit: they wait);
# a holder takes at most this many queued runs, so its transaction stays short.
HANDOFF_COMMANDS_MAX = 16
HANDOFF_TAKE_MAX = 64

# PostgreSQL: a writer alone on the log decides before taking the lock (LogWriter.speculate)
# and assumes the new ids it is asked about are new; when one was not (a cold cache), it reads
# under the lock for this many transactions before betting again.
SPECULATION_PAUSE_TRANSACTIONS = 100
