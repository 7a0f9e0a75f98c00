package pgcluster

// Superuser credentials. The superuser authenticates with scram-sha-256 over
// TCP and with trust over the cluster's unix socket.
const (
	Superuser     = "postgres"
	SuperPassword = "pgcluster-super-pw"
)

// Roles created by Start, one per authentication method configured in
// pg_hba.conf for 127.0.0.1/32 and ::1/128.
const (
	RoleTrust    = "app_trust"     // host ... trust
	RolePassword = "app_password"  // host ... password (cleartext on the wire)
	RoleMD5      = "app_md5"       // host ... md5, stored hash is md5
	RoleSCRAM    = "app_scram"     // host ... scram-sha-256
	RoleSCRAMSSL = "app_scram_ssl" // hostssl ... scram-sha-256; hostnossl ... reject
)

// Passwords of the roles above. app_trust has a password too (never asked
// for over TCP, but usable if a test changes pg_hba.conf).
const (
	PasswordTrust    = "trust-pw-1"
	PasswordPassword = "password-pw-2"
	PasswordMD5      = "md5-pw-3"
	PasswordSCRAM    = "scram-pw-4"
	PasswordSCRAMSSL = "scram-ssl-pw-5"
)

// AppDatabase is a database owned by RoleSCRAM. The other roles may connect
// to it and create objects in its public schema.
const AppDatabase = "app"

// AppRoles returns the non-superuser roles Start creates, in creation order.
func AppRoles() []string {
	return []string{RoleTrust, RolePassword, RoleMD5, RoleSCRAM, RoleSCRAMSSL}
}

// Passwords returns a fresh map from every role Start creates, including
// Superuser, to its password.
func Passwords() map[string]string {
	return map[string]string{
		Superuser:    SuperPassword,
		RoleTrust:    PasswordTrust,
		RolePassword: PasswordPassword,
		RoleMD5:      PasswordMD5,
		RoleSCRAM:    PasswordSCRAM,
		RoleSCRAMSSL: PasswordSCRAMSSL,
	}
}
