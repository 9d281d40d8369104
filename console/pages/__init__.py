"""The console's pages, one router per group: each module's ``router``."""
