#!/usr/bin/env bash
# Rebuilds kjv.txt from Debian's bible-kjv package (apt-get install bible-kjv): the King James
# Version, one chapter per paragraph (blank lines between chapters, one verse per line), verse
# references removed.
set -euo pipefail
cd "$(dirname "$0")"
bible -f "Genesis 1:1-Revelation 22:21" |
  awk '{
    ref = $1; sub(/:[0-9]+$/, "", ref);            # "Ge1:1" -> "Ge1": book and chapter
    $1 = ""; sub(/^ /, "");
    if (NR > 1 && ref != last) printf "\n";
    print; last = ref
  }' > kjv.txt
wc -c kjv.txt
