"""The style sheet of the residents' and councils' pages (``/report``, ``/council``).

Plain CSS inlined in each page: the pages work on a weak network with nothing else to fetch.
"""

PAGE_CSS = """
body{margin:0;font:16px/1.5 system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC",sans-serif;
color:#1d2730;background:#f4f6f8}
header{background:#0b5d7a;color:#fff;padding:12px 16px;display:flex;justify-content:space-between;
align-items:center}header h1{font-size:20px;margin:0}header a{color:#fff}
main{max-width:640px;margin:0 auto;padding:12px 16px 40px}
label{display:block;font-weight:600;margin:14px 0 6px}
#map{height:260px;border-radius:8px;border:1px solid #c8d1d9}
select,textarea,input[type=file]{width:100%;box-sizing:border-box;font:inherit;padding:10px;
border:1px solid #c8d1d9;border-radius:8px;background:#fff}
textarea{min-height:110px}
button{margin-top:18px;width:100%;padding:14px;font:inherit;font-weight:700;color:#fff;
background:#0b5d7a;border:0;border-radius:8px}
.note{color:#56636f;font-size:14px}.done{background:#e4f4ea;border-radius:8px;padding:12px;
margin-top:16px}.err{background:#fbe9e9;border-radius:8px;padding:12px;margin-top:16px}
table{width:100%;border-collapse:collapse;background:#fff}td,th{padding:8px;border-bottom:1px
solid #e3e8ec;text-align:left;vertical-align:top}
.pill{display:inline-block;padding:2px 10px;border-radius:12px;background:#e0ecf2}
"""
