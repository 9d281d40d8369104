"""The console: web pages for the people in the seller's office (customer
service, operations, approvers, finance, the owner, the admin), Chinese
first, served by the admin process under ``/console``.

Server-rendered Jinja2 pages over the admin API's own services (the same
queries, roles and masking as the JSON API), with htmx for the parts that
refresh by themselves and charts drawn on the server as SVG. Nothing is
fetched from outside 127.0.0.1: every file a page needs is in
``console/static`` (versions and licences: ``console/static/LICENSES.md``).
"""
