"""Pure rendering: a validated MailRelay in, Postfix/OpenDKIM files and Kubernetes objects out."""
