"""Customer notifications: templated messages per status change and per
delay, sent by email (SMTP), a WeChat Work group robot and an SMS gateway,
once per event, with a record of what was sent (the ``customer`` target)."""
