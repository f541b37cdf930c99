#!/bin/sh
# pdflatex for the test that compiles the LaTeX tables (tests/stats/test_paper_output.py).
# Debian's texlive-latex-base and -recommended (booktabs); installed only when missing, so `make setup`
# stays a no-op on a machine that has it. Without it the compile test is skipped with a reason
# and the escaping tests still run.
set -eu
if command -v pdflatex >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tex: pdflatex is missing and apt-get is not available; install a TeX" \
        "distribution to run the LaTeX compile test (it is skipped without one)." >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    texlive-latex-base texlive-latex-recommended
