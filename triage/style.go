package triage

// style is the pages' one stylesheet, inline (the Content-Security-Policy
// allows exactly this block, by hash). It is sized for a phone first: one
// column, large tap targets, long names wrapped, wide tables scrolled.
const style = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;background:#f6f7f9}
header{display:flex;justify-content:space-between;align-items:center;gap:.5rem;padding:.6rem 1rem;background:#1b1f24;color:#fff}
header a{color:#fff;text-decoration:none;font-weight:600}
header .who{font-size:.9rem}
main{max-width:48rem;margin:0 auto;padding:1rem}
h1{font-size:1.3rem;margin:.2rem 0 .8rem;overflow-wrap:anywhere}
h2{font-size:1.05rem;margin:1.4rem 0 .5rem;border-bottom:1px solid #d8dce1;padding-bottom:.2rem}
.name,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:anywhere;word-break:break-all}
.meta{display:block;color:#59636e;font-size:.85rem}
.meta.inline{display:inline}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:700;text-transform:uppercase;letter-spacing:.03em;color:#fff;background:#6e7781;margin-right:.3rem}
.sev-critical{background:#cf222e}.sev-warning{background:#bc4c00}.sev-info{background:#0969da}
.cards{list-style:none;margin:0;padding:0}
.cards li{margin:0 0 .6rem}
.card{display:block;padding:.8rem;background:#fff;border:1px solid #d8dce1;border-radius:.6rem;color:inherit;text-decoration:none}
.reasons{display:block;margin-top:.3rem;font-size:.9rem}
.box{background:#fff;border:1px solid #d8dce1;border-radius:.6rem;padding:.8rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0}
dt{color:#59636e}dd{margin:0;overflow-wrap:anywhere}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem;background:#fff}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e6e9ed;vertical-align:top}
td.num,th.num{text-align:right}
tr.this{background:#fff8c5}
form{margin:.6rem 0}
form.inline{display:inline;margin:0}
label{display:block;font-weight:600;margin:.4rem 0 .2rem}
input[type=text],input[type=password]{width:100%;font:inherit;padding:.6rem;border:1px solid #afb8c1;border-radius:.4rem}
button{font:inherit;font-weight:600;padding:.7rem 1rem;border:0;border-radius:.5rem;background:#1f883d;color:#fff;width:100%;margin-top:.4rem}
button.secondary{background:#0969da}button.danger{background:#6e7781}
button.link{background:none;color:#fff;text-decoration:underline;padding:0;width:auto;margin:0;font-weight:400}
.error{background:#ffebe9;border:1px solid #ff8182;border-radius:.4rem;padding:.6rem;margin:.6rem 0}
.ok{background:#dafbe1;border:1px solid #4ac26b;border-radius:.4rem;padding:.6rem;margin:.6rem 0}
ul.plain{margin:.2rem 0;padding-left:1.2rem}
`
