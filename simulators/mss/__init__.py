"""MSSanté simulator (SMTP + IMAP + HTTP control)."""
