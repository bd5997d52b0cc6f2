#!/usr/bin/env bash
# The C ABI check: include/floyd.h's declarations (functions, #define constants,
# typedefs, structs), normalised one per line, compared with the committed
# baseline abi/floyd.h.abi. A baseline line missing or changed fails (an
# incompatible change); new lines pass (additions).
#
#   abi/check.sh [HEADER [BASELINE]]          check (make abi-check)
#   abi/check.sh --bless [HEADER [BASELINE]]  rewrite the baseline (make abi-bless);
#                                             refused unless FLOYD_VERSION_MAJOR changed
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bless=0
if [ "${1:-}" = "--bless" ]; then bless=1; shift; fi
header="${1:-$here/../include/floyd.h}"
baseline="${2:-$here/floyd.h.abi}"

# One normalised line per declaration: comments dropped, whitespace collapsed.
normalise() {
  local text
  text="$(perl -0777 -pe 's{/\*.*?\*/}{}gs; s{//[^\n]*}{}g' "$1")"
  # #define constants, one a line.
  printf '%s\n' "$text" | sed -n 's/^#define \(FLOYD_[A-Z0-9_]*\)[[:space:]]\{1,\}\(.*[^[:space:]]\)[[:space:]]*$/#define \1 \2/p' |
    grep -v '^#define FLOYD_H '
  # Declarations: preprocessor lines and extern "C" braces dropped, one a line.
  printf '%s\n' "$text" | grep -v '^[[:space:]]*#' | tr '\n' ' ' |
    perl -pe 's/extern "C" \{//g; s/\}//g; s/\s+/ /g; s/;/;\n/g' |
    perl -ne 's/^\s+|\s+$//g; s/\s*([(),*])\s*/$1/g; s/,/, /g; print "$_\n" if /;$/'
}

version() { sed -n 's/^#define FLOYD_VERSION_MAJOR \([0-9]*\).*/\1/p' "$1" | head -n 1; }

current="$(normalise "$header")"
major="$(version "$header")"
if [ "$bless" = 1 ]; then
  if [ -f "$baseline" ]; then
    old="$(sed -n 's/^# major \([0-9]*\)$/\1/p' "$baseline")"
    if [ "$old" = "$major" ]; then
      echo "abi-bless refused: FLOYD_VERSION_MAJOR is still $major; an incompatible change needs a new major version" >&2
      exit 1
    fi
  fi
  { echo "# C ABI baseline of include/floyd.h (abi/check.sh); re-bless only with a new major version"
    echo "# major $major"
    echo "$current"; } > "$baseline"
  echo "abi: baseline $baseline written for major version $major"
  exit 0
fi

[ -f "$baseline" ] || { echo "abi-check: no baseline $baseline (run make abi-bless)" >&2; exit 1; }
missing="$(grep -v '^#\( \|$\)' "$baseline" | grep -vxF -f <(printf '%s\n' "$current") || true)"
if [ -n "$missing" ]; then
  echo "abi-check: FAILED, incompatible change to the C ABI; these baseline declarations are missing or changed:" >&2
  printf '  %s\n' "$missing" >&2
  echo "  (if intended: bump the major version in Cargo.toml and src/ffi, then make abi-bless)" >&2
  exit 1
fi
added="$(printf '%s\n' "$current" | grep -vxF -f <(grep -v '^# ' "$baseline") || true)"
echo "abi-check: OK ($(grep -vc '^# ' "$baseline") baseline declarations kept${added:+, $(printf '%s\n' "$added" | wc -l) added})"
