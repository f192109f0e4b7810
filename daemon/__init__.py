"""helpdeskd: an email-driven IT service desk."""
__version__ = "0.1.0"
