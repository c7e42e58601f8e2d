"""SMTP listeners on aiosmtpd: thin handlers that gather facts and call services."""
