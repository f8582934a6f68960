#!/usr/bin/env bash
# Runs every test of the project: Go (with -race), PHPUnit for php-client/,
# pytest for python-client/. Installs what is missing first (scripts/setup.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

status=0
echo "== gofmt / go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; status=1; fi
go vet ./... || status=1

echo "== phpunit (php-client)"
(cd php-client && phpunit --colors=never) || status=1

echo "== pytest (python-client)"
/usr/bin/python3 -m pytest -q python-client || status=1

echo "== go test -race ./..."
go test -race -count=1 -timeout 15m ./... || status=1

exit $status
