#!/bin/bash
# A stand-in for nft used through NATCTL_NFT by the fault-injection tests. It passes every
# call to the real nft ($REAL_NFT) except a committing load (-f without -c), which it:
#   refuse          refuses, changing nothing
#   load-then-fail  loads for real, then reports failure (first load only; later loads pass)
#   slow            loads after sleeping $FAKE_NFT_DELAY seconds (a window for SIGKILL)
#   break           loads for real and reports failure, then refuses every later load
#                   (so natctl's restore fails too: the exit-5 path)
#   fail-after-load loads every batch for real, then reports failure (natctl's restore too:
#                   only reading the kernel back tells that it worked)
#   tamper          loads for real, then rewrites the DNAT target of mapping "web" (port 8080)
#                   to $FAKE_NFT_TAMPER_TO (same rule and element count; first load only)
#   load-then-fill  loads for real, then fills the file system of $FAKE_NFT_FILL (first load
#                   only): the state dir is full when natctl records the generation
#   busy-chain-delete  refuses a batch of chain deletes with EBUSY, the first $FAKE_NFT_BUSY
#                   times (default 2): what a kernel before 6.2 answers while a map element
#                   deleted by the previous transaction still holds a reference to the chain
# and with FAKE_NFT_REFUSE=TEXT refuses any batch, checked or committed, that contains TEXT
# (a stand-in for a kernel that objects to one object of the batch).
is_load=0
file=""
prev=
is_check=0
for arg in "$@"; do
  case "$arg" in
    -f) is_load=1 ;;
    -c) is_check=1 ;;
  esac
  [ "$prev" = "-f" ] && file="$arg"
  prev="$arg"
done
if [ -n "$FAKE_NFT_REFUSE" ] && [ -n "$file" ] && grep -q -- "$FAKE_NFT_REFUSE" "$file"; then
  echo "Error: Could not process rule: File exists" >&2
  exit 1
fi
if [ "$is_load" = 1 ] && [ "$is_check" = 0 ]; then
  case "$FAKE_NFT_MODE" in
    refuse)
      echo "Error: Could not process rule: Operation not supported" >&2
      exit 1 ;;
    load-then-fail)
      if [ ! -e "$FAKE_NFT_STATE/failed-once" ]; then
        touch "$FAKE_NFT_STATE/failed-once"
        "$REAL_NFT" "$@" || exit 1
        echo "Error: Could not process rule: No buffer space available" >&2
        exit 1
      fi ;;
    slow)
      sleep "${FAKE_NFT_DELAY:-3}" ;;
    break)
      if [ ! -e "$FAKE_NFT_STATE/broken" ]; then
        touch "$FAKE_NFT_STATE/broken"
        "$REAL_NFT" "$@" || exit 1
        echo "Error: Could not process rule: No buffer space available" >&2
      else
        echo "Error: Could not process rule: Device or resource busy" >&2
      fi
      exit 1 ;;
    fail-after-load)
      "$REAL_NFT" "$@" || exit 1
      echo "Error: Could not process rule: No buffer space available" >&2
      exit 1 ;;
    tamper)
      if [ ! -e "$FAKE_NFT_STATE/tampered" ]; then
        touch "$FAKE_NFT_STATE/tampered"
        "$REAL_NFT" "$@" || exit 1
        if ! "$REAL_NFT" list chain inet natctl m-web >/dev/null 2>&1; then
          # A simple mapping is an element of the dnat4 data map (docs/ruleset.md): re-point it.
          "$REAL_NFT" "delete element inet natctl dnat4 { tcp . 8080 }" || exit 1
          "$REAL_NFT" "add element inet natctl dnat4 { tcp . 8080 comment \"web\" : ${FAKE_NFT_TAMPER_TO/:/ . } }" || exit 1
          exit 0
        fi
        line=$("$REAL_NFT" -a list chain inet natctl m-web | grep ' dnat ')
        handle=${line##*# handle }
        rule=$(printf '%s' "${line% # handle*}" | sed -e "s/dnat ip to [^ ]*/dnat ip to $FAKE_NFT_TAMPER_TO/" -e 's/counter packets [0-9]* bytes [0-9]*/counter/')
        "$REAL_NFT" "replace rule inet natctl m-web handle $handle $rule" || exit 1
        exit 0
      fi ;;
    busy-chain-delete)
      if [ -n "$file" ] && ! grep -qv '^delete chain ' "$file"; then
        count=$(cat "$FAKE_NFT_STATE/busy-count" 2>/dev/null || echo 0)
        if [ "$count" -lt "${FAKE_NFT_BUSY:-2}" ]; then
          echo $((count + 1)) > "$FAKE_NFT_STATE/busy-count"
          echo "Error: Could not process rule: Device or resource busy" >&2
          exit 1
        fi
      fi ;;
    load-then-fill)
      if [ ! -e "$FAKE_NFT_STATE/filled" ]; then
        touch "$FAKE_NFT_STATE/filled"
        "$REAL_NFT" "$@" || exit 1
        cat /dev/zero > "$FAKE_NFT_FILL/fill" 2>/dev/null
        exit 0
      fi ;;
  esac
fi
exec "$REAL_NFT" "$@"
