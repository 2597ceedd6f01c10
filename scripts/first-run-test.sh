#!/usr/bin/env bash
# A new user's first run (issue 16): clones this repository into an empty folder of mode 700 (no ../shared
# beside it), runs the default run (`scripts/run.sh`, no arguments) there until its first forecast, then stops
# everything it started and deletes the clone and its servers' data, whether the run succeeded or not.
# Prints the seconds from the clone to the first forecast; exits 1 if there was none within the timeout.
#
#   scripts/first-run-test.sh [--timeout SECONDS] [--with-worktree]
#     --timeout SECONDS   how long the run may take to its first forecast (2400: a release build from nothing)
#     --with-worktree     carry this checkout's uncommitted changes into the clone too (to try before a commit)
#
# Its servers and services use ports of their own, away from the test suite's and a developer's run.sh:
# RabbitMQ 5772, PostgreSQL 55532, services 8181-8187, fake Kraken 8899.
set -euo pipefail
timeout=2400 with_worktree=0
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
    --with-worktree) with_worktree=1; shift ;;
    *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
source_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
amqp_port=5772 pg_port=55532 port_offset=100

say() { printf '[first-run] %s\n' "$*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/candlecast-first-run.XXXXXX")
chmod 700 "$work"
clone=$work/candlecast
run_pid=""
cleanup() {
  local status=$?
  if [ -n "$run_pid" ] && kill -0 "$run_pid" 2>/dev/null; then
    say "stopping the run (process group $run_pid)"
    # run.sh stops its services on TERM; whatever is left of its group after 30 s is killed.
    kill -TERM -- "-$run_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$run_pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$run_pid" 2>/dev/null || true
  fi
  if [ -x "$clone/scripts/servers.sh" ]; then
    say "stopping the clone's servers and deleting their data"
    CANDLECAST_AMQP_PORT=$amqp_port CANDLECAST_PG_PORT=$pg_port "$clone/scripts/servers.sh" purge || true
  fi
  [ $status -eq 0 ] || { say "run.sh's output, last lines:"; tail -40 "$work/run.log" >&2 2>/dev/null || true; }
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $amqp_port $pg_port $(seq $((8081 + port_offset)) $((8087 + port_offset))) $((8799 + port_offset)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then say "port $port is already in use"; exit 1; fi
done

started=$(date +%s)
say "cloning $source_root into $clone (folder mode $(stat -c %a "$work"))"
git clone --quiet "$source_root" "$clone"
if [ "$with_worktree" = 1 ]; then
  git -C "$source_root" diff HEAD --binary | git -C "$clone" apply --binary --allow-empty
  (cd "$source_root" && git ls-files -z --others --exclude-standard | tar --null -T - -cf -) | tar -C "$clone" -xf -
fi
if [ -e "$work/shared" ] || [ -e "$clone/.build" ] || [ -e "$clone/.local" ]; then say "the clone is not bare"; exit 1; fi

# A user's environment: none of this checkout's CANDLECAST_* variables, ports of its own; a process group of
# its own (setsid) so that everything it starts can be stopped together.
env -i HOME="$HOME" PATH="$PATH" LANG=C.UTF-8 TERM=dumb \
  CANDLECAST_AMQP_PORT=$amqp_port CANDLECAST_PG_PORT=$pg_port CANDLECAST_PORT_OFFSET=$port_offset \
  setsid "$clone/scripts/run.sh" >"$work/run.log" 2>&1 </dev/null &
run_pid=$!
say "scripts/run.sh started (pid $run_pid), waiting up to $timeout s for its first forecast"
until grep -q 'first forecast after' "$work/run.log"; do
  kill -0 "$run_pid" 2>/dev/null || { say "scripts/run.sh ended before its first forecast"; exit 1; }
  [ $(( $(date +%s) - started )) -lt "$timeout" ] || { say "no forecast within $timeout s"; exit 1; }
  sleep 2
done
seconds=$(( $(date +%s) - started ))
sed 's/\x1b\[[0-9;]*m//g' "$work/run.log" | grep -E '^==> (replay:|live:|built|all seven|first forecast)' | sed 's/^/    /' >&2
sed 's/\x1b\[[0-9;]*m//g' "$work/run.log" | grep -A1 'first forecast after' | tail -1 >&2
# The services answer on the offset ports, and no JSON log line reached run.sh's own output.
curl -fs "http://127.0.0.1:$((8085 + port_offset))/v1/forecasts/latest?pair=XBTUSD&interval=1d" >/dev/null
! grep -qE '^\{"' "$work/run.log" || { say "service log lines in run.sh's output"; exit 1; }
say "first forecast $seconds s after the clone"
echo "first-run: clone to first forecast ${seconds} s"
