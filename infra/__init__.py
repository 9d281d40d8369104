"""Infrastructure every part shares: the bus (the only module that imports
kombu), the topology as data, settings, the database, its tables and
migrations, logging, masking of personal data, and the audit record."""
