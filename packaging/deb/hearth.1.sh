#!/bin/sh
# Print the hearth(1) manual page (troff) for version $1.
cat <<MAN
.TH HEARTH 1 "" "hearth $1" "User Commands"
.SH NAME
hearth \- one binary for the homelab: filtering DNS resolver and admin UI
.SH SYNOPSIS
.B hearth run
.RB [ \-\-config
.IR FILE ]
.RB [ \-\-data\-dir
.IR DIR ]
.br
.B hearth check\-config
.I FILE
.br
.B hearth config default
.br
.B hearth admin set\-password
.I USER
.br
.B hearth token create
.I NAME
.br
.B hearth healthcheck
.br
.B hearth \-\-version
.SH DESCRIPTION
.B hearth
runs a DNS filtering resolver with DNSSEC validation, DNS over TLS and HTTPS, a
query log, metrics and a browser admin UI. Open the admin address in a browser:
the first-run wizard creates the admin account. The configuration is
.IR /etc/hearth/hearth.toml ;
.B hearth config default
prints every key with its documentation.
.SH FILES
.TP
.I /etc/hearth/hearth.toml
configuration (changed by the admin UI too)
.TP
.I /var/lib/hearth
state: accounts, query log, certificates, downloaded lists
.SH SEE ALSO
.I /usr/share/doc/hearth/README.md
MAN
