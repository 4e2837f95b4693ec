#!/usr/bin/env bash
# install-buf.sh VERSION DEST: put buf VERSION (v1.75.0) at DEST (bin/buf).
#
# Prebuilt first: buf's own release binary as npm publishes it
# (@bufbuild/buf-<os>-<arch>, the per-platform package @bufbuild/buf
# depends on), checked against the sha512 pinned below, ~3 s. Building it
# with `go install` takes ~2-3 min on a cold cache; that is the fallback
# when npm is missing (and cannot be installed from Debian as root), the
# platform has no prebuilt package, or the download fails.
# BUF_INSTALL=go forces the build, BUF_INSTALL=npm forbids it.
set -euo pipefail

version=${1:?usage: install-buf.sh VERSION DEST}
dest=${2:?usage: install-buf.sh VERSION DEST}
want=${version#v}
mode=${BUF_INSTALL:-auto}
go=${GO:-go}

# npm's dist.integrity of each @bufbuild/buf-<platform>@1.75.0 tarball. On a
# version bump: npm view @bufbuild/buf-<platform>@X.Y.Z dist.integrity
declare -A integrity=(
	[linux-x64]=sha512-YGGJAx0lpMCE7aMWjNOJcfoEaG/e+iYHnTC4SZ0P5eS4IffMryA9Z4/bb1m1wNXAEJ8ATFMEZOAk/5x9VE47ig==
	[linux-aarch64]=sha512-eX+XyokzJDqsNIFo8b1O3DBvbnksOozPJX4QVsNn61JqSUtWspyTNeYqwg8lRDancML+bDqZEDFPABjAsVCQGQ==
	[darwin-arm64]=sha512-QiQYSmtVUcKy9DK/d+zJ3+D4iUQmmiDQ3i8/yBr8cf7Nr28lqKMAIKznJE/uGRsjr90fHaUQO+Xsedec0ArN5g==
	[darwin-x64]=sha512-U2W+MRE9jJ7Am7x02ZWt87U5lfPrjKMdB1aZDslsuyOHo+fEUvZolupmhoW30v6syNAWBOfkoi0k5TLc2FNGqQ==
)
pinned_version=1.75.0

mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go_install() {
	echo "buf $version: go install github.com/bufbuild/buf/cmd/buf@$version ($1; ~2-3 min cold)"
	GOBIN=$tmp "$go" install "github.com/bufbuild/buf/cmd/buf@$version"
	mv "$tmp/buf" "$dest"
}

platform() {
	local os arch
	case "$(uname -s)" in
	Linux) os=linux ;;
	Darwin) os=darwin ;;
	*) return 1 ;;
	esac
	case "$(uname -m)" in
	x86_64 | amd64) arch=x64 ;;
	aarch64 | arm64) if [ "$os" = linux ]; then arch=aarch64; else arch=arm64; fi ;;
	*) return 1 ;;
	esac
	echo "$os-$arch"
}

# npm_install tries the prebuilt binary; it prints why and fails when it
# cannot be used.
npm_install() {
	local plat pkg sum got
	if ! plat=$(platform); then
		echo "buf $version: no prebuilt npm package pinned for $(uname -s)/$(uname -m)"
		return 1
	fi
	sum=${integrity[$plat]:-}
	if [ "$want" != "$pinned_version" ] || [ -z "$sum" ]; then
		echo "buf $version: no sha512 pinned for @bufbuild/buf-$plat@$want in tools/install-buf.sh"
		return 1
	fi
	if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
			echo "buf $version: installing Debian's nodejs and npm to fetch the prebuilt buf"
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null || return 1
		else
			echo "buf $version: npm is missing"
			return 1
		fi
	fi
	pkg="@bufbuild/buf-$plat@$want"
	echo "buf $version: prebuilt release from npm ($pkg)"
	(cd "$tmp" && npm pack --silent --cache "$tmp/npm-cache" "$pkg" >/dev/null) || return 1
	got=$(node -e 'const c = require("crypto"), f = require("fs");
		console.log("sha512-" + c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' \
		"$tmp"/bufbuild-buf-"$plat"-"$want".tgz) || return 1
	if [ "$got" != "$sum" ]; then
		echo "buf $version: $pkg has sha512 $got, pinned $sum: not using it"
		return 1
	fi
	tar -xzf "$tmp/bufbuild-buf-$plat-$want.tgz" -C "$tmp" package/bin/buf || return 1
	[ "$("$tmp/package/bin/buf" --version)" = "$want" ] || {
		echo "buf $version: the npm binary does not report $want"
		return 1
	}
	mv "$tmp/package/bin/buf" "$dest"
}

case "$mode" in
go) go_install "BUF_INSTALL=go" ;;
npm) npm_install ;;
auto) npm_install || go_install "fallback" ;;
*)
	echo "BUF_INSTALL must be auto, npm or go, not $mode" >&2
	exit 2
	;;
esac
got=$("$dest" --version)
if [ "$got" != "$want" ]; then
	echo "$dest --version prints $got, want $want" >&2
	exit 1
fi
echo "buf $version: $dest --version = $got"
