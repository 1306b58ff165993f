#!/usr/bin/env bash
# Back up the application's PostgreSQL databases and uploaded files to object storage, keep a
# rotating set of copies, and verify that the newest dump can be restored into a scratch database.
#
# Usage: backup.sh [--dry-run] [--skip-verify] [--keep N]
#
# Configuration comes from the environment (see the defaults below) so the same script runs from
# cron on the host and from the scheduled job in the cluster.

set -Eeuo pipefail

DRY_RUN=0
VERIFY=1
KEEP="${BACKUP_KEEP:-14}"
DATABASES="${BACKUP_DATABASES:-app analytics}"
UPLOADS_DIR="${BACKUP_UPLOADS_DIR:-/srv/app/uploads}"
BUCKET="${BACKUP_BUCKET:-s3://example-backups/app}"
WORK_DIR="${BACKUP_WORK_DIR:-/var/tmp/app-backup}"
PG_HOST="${PGHOST:-localhost}"
PG_PORT="${PGPORT:-5432}"
SCRATCH_DB="${BACKUP_SCRATCH_DB:-restore_check}"
LOG_TAG="app-backup"

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

log() {
  local level="$1"
  shift
  printf '%s %s\n' "$level" "$*" >&2
  if command -v logger >/dev/null 2>&1; then
    logger -t "$LOG_TAG" -p "user.${level,,}" -- "$*" || true
  fi
}

run() {
  if (( DRY_RUN )); then
    log INFO "dry run: $*"
  else
    "$@"
  fi
}

on_error() {
  local exit_code=$?
  log ERR "backup failed at line ${BASH_LINENO[0]} (exit ${exit_code})"
  exit "$exit_code"
}
trap on_error ERR

while (( $# > 0 )); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --skip-verify) VERIFY=0 ;;
    --keep)
      shift
      [[ "${1:-}" =~ ^[0-9]+$ ]] || { log ERR "--keep needs a number"; usage 2; }
      KEEP="$1"
      ;;
    -h|--help) usage 0 ;;
    *) log ERR "unknown argument: $1"; usage 2 ;;
  esac
  shift
done

for tool in pg_dump pg_restore psql tar aws sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || { log ERR "missing tool: $tool"; exit 3; }
done

# One folder per run, named by a sequence number kept in the bucket, so names sort in run order
# and never depend on the host's clock.
sequence_file="$WORK_DIR/sequence"
mkdir -p "$WORK_DIR"
if aws s3 cp "$BUCKET/sequence" "$sequence_file" >/dev/null 2>&1; then
  sequence=$(( $(cat "$sequence_file") + 1 ))
else
  sequence=1
fi
run_name=$(printf 'run-%06d' "$sequence")
run_dir="$WORK_DIR/$run_name"
mkdir -p "$run_dir"
log INFO "starting $run_name (keep $KEEP, databases: $DATABASES)"

# 1. Dump each database in the custom format: compressed, and restorable table by table.
for db in $DATABASES; do
  target="$run_dir/$db.dump"
  log INFO "dumping $db"
  run pg_dump --host "$PG_HOST" --port "$PG_PORT" --format custom --compress 6 \
    --no-owner --no-privileges --file "$target" "$db"
done

# 2. Archive uploaded files. Uploads are immutable once written, so a plain tar is enough.
if [[ -d "$UPLOADS_DIR" ]]; then
  log INFO "archiving uploads from $UPLOADS_DIR"
  run tar --create --gzip --file "$run_dir/uploads.tar.gz" --directory "$UPLOADS_DIR" .
else
  log WARNING "uploads folder $UPLOADS_DIR not found; skipping"
fi

# 3. Checksums, so a corrupted copy is noticed before anyone relies on it.
if (( ! DRY_RUN )); then
  (cd "$run_dir" && sha256sum -- * > SHA256SUMS)
fi

# 4. Verify the main database dump by restoring it into a scratch database.
if (( VERIFY )) && (( ! DRY_RUN )); then
  first_db="${DATABASES%% *}"
  log INFO "verifying $first_db dump by restoring into $SCRATCH_DB"
  psql --host "$PG_HOST" --port "$PG_PORT" --quiet --command "DROP DATABASE IF EXISTS $SCRATCH_DB;" postgres
  psql --host "$PG_HOST" --port "$PG_PORT" --quiet --command "CREATE DATABASE $SCRATCH_DB;" postgres
  pg_restore --host "$PG_HOST" --port "$PG_PORT" --dbname "$SCRATCH_DB" --no-owner --exit-on-error \
    "$run_dir/$first_db.dump"
  tables=$(psql --host "$PG_HOST" --port "$PG_PORT" --tuples-only --no-align --dbname "$SCRATCH_DB" \
    --command "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public';")
  if (( tables == 0 )); then
    log ERR "restored database has no tables; the dump is not usable"
    exit 4
  fi
  log INFO "restore check passed: $tables tables"
  psql --host "$PG_HOST" --port "$PG_PORT" --quiet --command "DROP DATABASE $SCRATCH_DB;" postgres
fi

# 5. Upload, then record the new sequence number only after the upload succeeded.
log INFO "uploading $run_name to $BUCKET"
run aws s3 cp --recursive --only-show-errors "$run_dir" "$BUCKET/$run_name/"
if (( ! DRY_RUN )); then
  echo "$sequence" > "$sequence_file"
  aws s3 cp --only-show-errors "$sequence_file" "$BUCKET/sequence"
fi

# 6. Rotation: keep the newest $KEEP runs.
mapfile -t runs < <(aws s3 ls "$BUCKET/" | awk '/PRE run-/ {print $2}' | sed 's#/$##' | sort)
excess=$(( ${#runs[@]} - KEEP ))
if (( excess > 0 )); then
  for old in "${runs[@]:0:excess}"; do
    log INFO "removing old backup $old"
    run aws s3 rm --recursive --only-show-errors "$BUCKET/$old/"
  done
fi

rm -rf "$run_dir"
log INFO "backup $run_name finished"
