"""The back office: call records and their store (`records`, `store`, `database`, `spool`),
recordings and redaction, the live feed and monitor, the supervisors' console with its users,
logins and feedback, and the commands that look after them (`admin`). `backoffice` puts them
together for a server."""
