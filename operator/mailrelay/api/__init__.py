"""The MailRelay API: names and permissions, spec types and validation, conditions."""
