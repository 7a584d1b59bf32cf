#!/bin/bash
# A stand-in for iptables-legacy-restore, put first on PATH by the iptables fault-injection
# tests. It passes every call to the real one ($REAL_RESTORE) except a committing restore
# (no --test), which it:
#   refuse          refuses, changing nothing
#   refuse-filter   refuses a restore of the filter table only (the nat table before it loads)
#   load-then-fail  loads for real, then reports failure (first load only; later loads pass)
#   slow            loads after sleeping $FAKE_DELAY seconds (a window for SIGKILL)
#   break           loads for real and reports failure, then refuses every later load
#                   (so natctl's restore fails too: the exit-5 path)
file=""
is_test=0
for arg in "$@"; do
  case "$arg" in
    --test|-t) is_test=1 ;;
    -*) ;;
    *) file="$arg" ;;
  esac
done
if [ "$is_test" = 0 ]; then
  case "$FAKE_MODE" in
    refuse)
      echo "iptables-restore: line 2 failed: Operation not supported" >&2
      exit 1 ;;
    refuse-filter)
      if grep -q '^\*filter' "$file"; then
        echo "iptables-restore: line 2 failed: Operation not supported" >&2
        exit 1
      fi ;;
    load-then-fail)
      if [ ! -e "$FAKE_STATE/failed-once" ]; then
        touch "$FAKE_STATE/failed-once"
        "$REAL_RESTORE" "$@" || exit 1
        echo "iptables-restore: line 9 failed: No buffer space available" >&2
        exit 1
      fi ;;
    slow)
      sleep "${FAKE_DELAY:-3}" ;;
    break)
      if [ ! -e "$FAKE_STATE/broken" ]; then
        touch "$FAKE_STATE/broken"
        "$REAL_RESTORE" "$@" || exit 1
        echo "iptables-restore: line 9 failed: No buffer space available" >&2
      else
        echo "iptables-restore: line 2 failed: Device or resource busy" >&2
      fi
      exit 1 ;;
  esac
fi
exec "$REAL_RESTORE" "$@"
