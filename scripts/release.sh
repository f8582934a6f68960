#!/usr/bin/env bash
# Builds the release binaries of the supervisor for linux/amd64 and
# linux/arm64, static (CGO_ENABLED=0), with the version, commit and build
# date stamped in by -ldflags (`supervisor --version` prints them), and a
# SHA256SUMS file next to them.
#
#   scripts/release.sh [VERSION] [OUTDIR]
#
# VERSION defaults to $VERSION, else `git describe --tags`, else 0.0.0-dev;
# OUTDIR to dist/. COMMIT and DATE may be set in the environment (defaults:
# the short HEAD commit, with "-dirty" when the tree has changes, and the
# current UTC time; SOURCE_DATE_EPOCH, when set, gives the date).
# Output: OUTDIR/supervisor-VERSION-linux-{amd64,arm64} and SHA256SUMS.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-${VERSION:-}}"
if [ -z "$version" ]; then
	version="$(git describe --tags --always 2>/dev/null || true)"
	version="${version#v}"
	[ -n "$version" ] || version="0.0.0-dev"
fi
out="${2:-dist}"
commit="${COMMIT:-}"
if [ -z "$commit" ]; then
	commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
	if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		commit="${commit}-dirty"
	fi
fi
date="${DATE:-}"
if [ -z "$date" ]; then
	if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
		date="$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"
	else
		date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	fi
fi

case "$version$commit$date" in
*[[:space:]\'\"]*) echo "release.sh: version, commit and date must not contain spaces or quotes" >&2; exit 2 ;;
esac

mkdir -p "$out"
ldflags="-s -w -X main.version=${version} -X main.commit=${commit} -X main.date=${date}"
files=()
for arch in amd64 arm64; do
	bin="supervisor-${version}-linux-${arch}"
	echo "building $out/$bin"
	CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath -ldflags "$ldflags" -o "$out/$bin" ./cmd/supervisor
	files+=("$bin")
done
(cd "$out" && sha256sum "${files[@]}" > SHA256SUMS)
echo "done: $out (version $version, commit $commit, built $date)"
