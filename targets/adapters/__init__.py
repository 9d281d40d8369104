"""Target adapters: how an order is put into an existing system (an ERP, a
CRM, a form). One module per system; registered in :mod:`targets.adapters.registry`."""
