#!/usr/bin/env bash
# Installs what Pipevisor's build and tests need on a fresh Debian machine, and
# makes sure the local RabbitMQ answers. Idempotent: safe to run every time.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v php >/dev/null 2>&1 || need_apt+=(php-cli)
command -v phpunit >/dev/null 2>&1 || need_apt+=(phpunit)
/usr/bin/python3 -m pytest --version >/dev/null 2>&1 || need_apt+=(python3-pytest)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# Headless Chromium for the dashboard's browser tests (tests/dashboard_test.go).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The packaging tests install php-client with Composer and python-client
# with pip from the system setuptools, both offline.
command -v composer >/dev/null 2>&1 || need_apt+=(composer)
/usr/bin/python3 -c "import setuptools, pip" >/dev/null 2>&1 || need_apt+=(python3-setuptools python3-pip)
if [ "${#need_apt[@]}" -gt 0 ]; then
	echo "setup: installing ${need_apt[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# RabbitMQ: the AMQP driver's tests talk to the real broker on 127.0.0.1:5672.
if command -v rabbitmqctl >/dev/null 2>&1; then
	if ! rabbitmqctl -q status >/dev/null 2>&1; then
		echo "setup: starting rabbitmq-server"
		rabbitmq-server -detached >/dev/null 2>&1 || true
	fi
	for _ in $(seq 1 60); do
		rabbitmqctl -q await_startup >/dev/null 2>&1 && break
		sleep 1
	done
	rabbitmqctl -q status >/dev/null 2>&1 || echo "setup: WARNING rabbitmq did not come up"
fi

# SQS emulator: moto's server from this image's Python; fauxqs from npm otherwise.
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
	if ! [ -x "$(npm root -g 2>/dev/null)/fauxqs/bin/fauxqs" ] && ! command -v fauxqs >/dev/null 2>&1; then
		echo "setup: moto is missing, installing fauxqs"
		npm install -g fauxqs@1.9.2 >/dev/null 2>&1 || echo "setup: WARNING could not install fauxqs"
	fi
fi

go mod download
