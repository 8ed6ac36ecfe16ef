#!/bin/sh
# Build a DNSSEC test tree in DIR with BIND's tools: our own signed root (127.0.1.1), a signed TLD "test."
# (127.0.1.2) and leaf zones (127.0.1.3):
#   secure.test   signed, NSEC                (www A, *.wild A, a.b ENT, txt TXT)
#   nsec3.test    signed, NSEC3 (no salt, 0 iterations)
#   optout.test   signed, NSEC3 opt-out, with an unsigned delegation child.optout.test
#   insecure.test unsigned delegation (no DS in test.)
#   bad.test      signed, the signature of www.bad.test corrupted
#   expired.test  signed with signatures that expired in 2020
#   rebind.test   unsigned, served from a *public* address (198.18.0.53, on lo; the leaf server listens there too):
#                 www A 192.168.1.1 (DNS rebinding), pub A 192.0.2.20, and sub.rebind.test delegated to
#                 ns.sub.rebind.test with loopback glue 127.0.1.2 (the TLD server, which serves sub.rebind.test)
# Writes named-{root,tld,leaf}.conf, root.ds (the trust anchor) and root.hints. Usage: mktree.sh DIR
set -eu
D=$(cd "$1" && pwd)
cd "$D"
mkdir -p keys
key() { # zone [extra keygen args] -> prints "KSK ZSK" basenames
    zone=$1; shift
    k=$(dnssec-keygen -q -K keys -a ECDSAP256SHA256 -f KSK "$@" "$zone")
    z=$(dnssec-keygen -q -K keys -a ECDSAP256SHA256 "$@" "$zone")
    echo "$D/keys/$k $D/keys/$z"
}
sign() { # zone file [signzone args...]
    zone=$1; file=$2; shift 2
    set -- $(key "$zone" -P 20190101000000 -A 20190101000000) "$@"
    ksk=$1; zsk=$2; shift 2
    cat "$ksk.key" "$zsk.key" >> "$file"
    dnssec-signzone -q -P -d "$D" -K "$D/keys" -o "$zone" -k "$ksk.key" -f "$file.signed" "$@" "$file" "$zsk.key" >/dev/null
    dnssec-dsfromkey -2 "$ksk.key"
}
SOA='@ 3600 IN SOA ns.test. admin.test. 1 3600 600 86400 300'

cat > secure.test.zone <<Z
\$ORIGIN secure.test.
$SOA
@ 3600 IN NS ns.leaf.test.
www 3600 IN A 192.0.2.1
*.wild 3600 IN A 192.0.2.2
x.a.b 3600 IN A 192.0.2.5
txt 3600 IN TXT "hello"
alias 3600 IN CNAME www
Z
cat > nsec3.test.zone <<Z
\$ORIGIN nsec3.test.
$SOA
@ 3600 IN NS ns.leaf.test.
www 3600 IN A 192.0.2.3
*.wild 3600 IN A 192.0.2.6
Z
cat > optout.test.zone <<Z
\$ORIGIN optout.test.
$SOA
@ 3600 IN NS ns.leaf.test.
www 3600 IN A 192.0.2.7
child 3600 IN NS ns.leaf.test.
Z
cat > child.optout.test.zone <<Z
\$ORIGIN child.optout.test.
$SOA
@ 3600 IN NS ns.leaf.test.
www 3600 IN A 192.0.2.8
Z
cat > insecure.test.zone <<Z
\$ORIGIN insecure.test.
$SOA
@ 3600 IN NS ns.leaf.test.
www 3600 IN A 192.0.2.4
Z
cat > bad.test.zone <<Z
\$ORIGIN bad.test.
$SOA
@ 3600 IN NS ns.leaf.test.
www 3600 IN A 192.0.2.9
ok 3600 IN A 192.0.2.10
Z
cat > expired.test.zone <<Z
\$ORIGIN expired.test.
$SOA
@ 3600 IN NS ns.leaf.test.
www 3600 IN A 192.0.2.11
Z
DS_SECURE=$(sign secure.test secure.test.zone)
DS_NSEC3=$(sign nsec3.test nsec3.test.zone -3 - -H 0)
DS_OPTOUT=$(sign optout.test optout.test.zone -3 - -H 0 -A)
DS_BAD=$(sign bad.test bad.test.zone)
DS_EXPIRED=$(sign expired.test expired.test.zone -s 20200101000000 -e 20200201000000)
# corrupt the signature over www.bad.test A: flip characters in the middle of its base64
awk '
  /^www\.bad\.test\./ { www = 1 } /^[a-z]/ && !/^www\.bad\.test\./ { www = 0 }
  www && /RRSIG\tA / { sig = 1 }
  sig == 2 && !done { sub(/[A-Za-z0-9+\/][A-Za-z0-9+\/][A-Za-z0-9+\/][A-Za-z0-9+\/]/, "AAAA"); done = 1 }
  sig == 1 && / bad\.test\.$/ { sig = 2 }
  { print }' bad.test.zone.signed > bad.tmp && mv bad.tmp bad.test.zone.signed

cat > rebind.test.zone <<Z
\$ORIGIN rebind.test.
$SOA
@ 3600 IN NS ns.pub.test.
www 3600 IN A 192.168.1.1
pub 3600 IN A 192.0.2.20
sub 3600 IN NS ns.sub
ns.sub 3600 IN A 127.0.1.2
Z
cat > sub.rebind.test.zone <<Z
\$ORIGIN sub.rebind.test.
$SOA
@ 3600 IN NS ns
ns 3600 IN A 127.0.1.2
www 3600 IN A 192.0.2.21
Z

cat > test.zone <<Z
\$ORIGIN test.
$SOA
@ 3600 IN NS ns.test.
ns 3600 IN A 127.0.1.2
ns.leaf 3600 IN A 127.0.1.3
secure 3600 IN NS ns.leaf.test.
nsec3 3600 IN NS ns.leaf.test.
optout 3600 IN NS ns.leaf.test.
insecure 3600 IN NS ns.leaf.test.
bad 3600 IN NS ns.leaf.test.
expired 3600 IN NS ns.leaf.test.
rebind 3600 IN NS ns.pub.test.
ns.pub 3600 IN A 198.18.0.53
$DS_SECURE
$DS_NSEC3
$DS_OPTOUT
$DS_BAD
$DS_EXPIRED
Z
DS_TEST=$(sign test test.zone)

cat > root.zone <<Z
\$ORIGIN .
. 3600 IN SOA ns.root. admin.root. 1 3600 600 86400 300
. 3600 IN NS ns.root.
ns.root. 3600 IN A 127.0.1.1
test. 3600 IN NS ns.test.
ns.test. 3600 IN A 127.0.1.2
$DS_TEST
Z
sign . root.zone > root.ds
printf '. 3600000 IN NS ns.root.\nns.root. 3600000 IN A 127.0.1.1\n' > root.hints

conf() { # name address zones...
    name=$1; addr=$2; shift 2
    {
        printf 'controls { };\noptions {\n  directory "%s";\n  pid-file "%s/named-%s.pid";\n  listen-on port 53 { %s; };\n  listen-on-v6 { none; };\n  recursion no;\n  dnssec-validation no;\n  notify no;\n  querylog yes;\n};\nlogging { channel q { file "%s/queries-%s.log"; }; category queries { q; }; };\n' "$D" "$D" "$name" "$addr" "$D" "$name"
        for z in "$@"; do
            f="$z.zone.signed"; [ -f "$f" ] || f="$z.zone"
            [ "$z" = root ] && zn=. || zn=$z
            printf 'zone "%s" { type primary; file "%s/%s"; };\n' "$zn" "$D" "$f"
        done
    } > "named-$name.conf"
}
conf root 127.0.1.1 root
conf tld 127.0.1.2 test sub.rebind.test
conf leaf "127.0.1.3; 198.18.0.53" secure.test nsec3.test optout.test child.optout.test insecure.test bad.test expired.test rebind.test
