#!/usr/bin/env bash
# Tests abi/check.sh itself on scratch copies of include/floyd.h: a changed
# signature, a removed function and a changed constant must fail; an added
# function must pass.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
h="$here/../include/floyd.h"
expect() { # expect pass|fail DESCRIPTION HEADER
  if "$here/check.sh" "$3" "$here/floyd.h.abi" >"$tmp/out" 2>&1; then got=pass; else got=fail; fi
  [ "$got" = "$1" ] || { echo "abi test: $2: expected $1, got $got" >&2; cat "$tmp/out" >&2; exit 1; }
  echo "abi test: $2: $1 (as expected)"
}
expect pass "unchanged header" "$h"
sed 's/^int floyd_delete(floyd_t \*f, const char \*key, size_t key_len, char \*\*errmsg);/int floyd_delete(floyd_t *f, const char *key, uint32_t key_len, char **errmsg);/' "$h" > "$tmp/changed.h"
! cmp -s "$h" "$tmp/changed.h" || { echo "abi test: the signature edit did not apply" >&2; exit 1; }
expect fail "floyd_delete's key_len changed to uint32_t" "$tmp/changed.h"
grep -v '^bool floyd_is_leader' "$h" > "$tmp/removed.h"
expect fail "floyd_is_leader removed" "$tmp/removed.h"
sed 's/^#define FLOYD_TIMEOUT 3$/#define FLOYD_TIMEOUT 13/' "$h" > "$tmp/const.h"
expect fail "FLOYD_TIMEOUT renumbered" "$tmp/const.h"
sed 's|^#ifdef __cplusplus$|#define FLOYD_NEW_CONSTANT 99\n#ifdef __cplusplus|; s|^void floyd_free(void \*p);$|void floyd_free(void *p);\nint floyd_new_function(floyd_t *f, uint64_t x, char **errmsg);|' "$h" > "$tmp/added.h"
grep -q floyd_new_function "$tmp/added.h" || { echo "abi test: the addition did not apply" >&2; exit 1; }
expect pass "floyd_new_function and FLOYD_NEW_CONSTANT added" "$tmp/added.h"
cp "$here/floyd.h.abi" "$tmp/baseline"
if "$here/check.sh" --bless "$h" "$tmp/baseline" >/dev/null 2>&1; then
  echo "abi test: re-blessing without a new major version was not refused" >&2; exit 1
fi
echo "abi test: re-bless with the same major version: refused (as expected)"
sed 's/^#define FLOYD_VERSION_MAJOR 0$/#define FLOYD_VERSION_MAJOR 1/' "$tmp/changed.h" > "$tmp/major.h"
"$here/check.sh" --bless "$tmp/major.h" "$tmp/baseline" >/dev/null
"$here/check.sh" "$tmp/major.h" "$tmp/baseline" >/dev/null
echo "abi test: re-bless with a new major version: accepted, and the new header then passes"
