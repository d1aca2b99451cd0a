// A real slapd in a sandbox node, shared by the directory tests (integration-directory, integration-sssd).
#pragma once
#include <string>

#include "engine/shell.h"

namespace labfleet::testing {

// The node's own /etc/ldap/slapd.d and /var/lib/ldap (its overlay; the host's are never touched) replaced by a
// test directory: schemas core, cosine, nis, inetorgperson; one mdb database; root (peercred uid 0 over
// ldapi:///) manages it, everyone may read it. slapd listens on ldapi:/// only (the node shares the host's network),
// unless LF_SLAPD_URLS names more listeners (SlapdSetup).
inline const char* kSlapdSetupScript = R"SH(set -e
rm -rf /etc/ldap/slapd.d /var/lib/ldap
mkdir -p /etc/ldap/slapd.d /var/lib/ldap /run/slapd
cat > /run/slapd/config.ldif <<'L'
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: /run/slapd/slapd.pid

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbDirectory: /var/lib/ldap
olcSuffix: dc=lab,dc=example
olcRootDN: gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth
olcAccess: {0}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * read
L
slapadd -q -n 0 -F /etc/ldap/slapd.d -l /run/slapd/config.ldif
printf 'dn: dc=lab,dc=example\nobjectClass: dcObject\nobjectClass: organization\ndc: lab\no: Lab\n' | slapadd -q -n 1 -F /etc/ldap/slapd.d
chown -R openldap:openldap /etc/ldap/slapd.d /var/lib/ldap /run/slapd
slapd -h "${LF_SLAPD_URLS:-ldapi:///}" -F /etc/ldap/slapd.d -u openldap -g openldap
for i in $(seq 100); do
  ldapsearch -Q -Y EXTERNAL -H ldapi:/// -LLL -s base -b dc=lab,dc=example dn >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo 'slapd did not answer on ldapi:///' >&2; exit 1
)SH";

// The setup script, slapd listening on `urls` (space separated, e.g. "ldapi:/// ldap://127.0.0.1:3899/").
inline std::string SlapdSetup(const std::string& urls = "ldapi:///") {
  return "LF_SLAPD_URLS=" + ShellQuote(urls) + "\n" + kSlapdSetupScript;
}

}  // namespace labfleet::testing
