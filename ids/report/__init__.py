"""`otids report`: one self-contained HTML report built from ECS documents (model.py), rendered with the
vendored Chart.js and Cytoscape.js inlined (render.py, vendor/; tools/vendor_report_js.sh re-fetches them)."""
