"""changeconsole: change notices to many customer AWS organisations, each from its own SES."""

__version__ = "0.1.0"
