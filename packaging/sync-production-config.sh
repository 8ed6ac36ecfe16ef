#!/bin/sh
# Regenerate packaging/hearth.production.toml from assets/hearth.default.toml (the config reference): the same
# file with the production addresses. A unit test checks that the two agree; run this after editing the default.
set -eu
cd "$(dirname "$0")/.."
sed -e 's|^# hearth.toml: the configuration of one hearth instance.$|# /etc/hearth/hearth.toml: the production configuration installed by the hearth package.|' \
    -e 's|^http_listen = .*|http_listen = [":80"]|' \
    -e 's|^https_listen = .*|https_listen = [":443"]|' \
    -e 's|^data_dir = .*|data_dir = "/var/lib/hearth"|' \
    -e 's|^listen = \["127.0.0.1:5353"\]$|listen = [":53"]|' \
    assets/hearth.default.toml > packaging/hearth.production.toml
