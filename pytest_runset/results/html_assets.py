"""The stylesheet and script inlined into every HTML report page (see :mod:`.html`).

The script's SHA-256 goes into the page's Content-Security-Policy, so any change to ``JS`` is
picked up by the renderer without further edits.
"""

from __future__ import annotations

CSS = """
:root{--passed:#2e7d32;--failed:#c62828;--error:#ad1457;--timeout:#e65100;--skipped:#757575;
--xfailed:#6d4c41;--xpassed:#f9a825;--interrupted:#6a1b9a;--not_run:#9e9e9e;--line:#ddd;
--flaky:#8d6e00}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 1.5em 2em;color:#222}
h1{font-size:1.4em;margin:.8em 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid var(--line);
text-align:left;vertical-align:top}th{background:#f4f4f4}
.meta td:first-child{color:#555;padding-right:1.5em}
.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-size:.9em}
.s-passed{background:var(--passed)}.s-failed{background:var(--failed)}
.s-error{background:var(--error)}.s-timeout{background:var(--timeout)}
.s-skipped{background:var(--skipped)}.s-xfailed{background:var(--xfailed)}
.s-xpassed{background:var(--xpassed)}.s-interrupted{background:var(--interrupted)}
.s-not_run{background:var(--not_run)}.s-unknown{background:#000}
.counts span{margin-right:.6em}
.slug{color:#666;font-size:.85em}.msg{white-space:pre-wrap;word-break:break-word;max-width:50em}
pre{background:#f7f7f7;padding:6px;white-space:pre-wrap;word-break:break-word}
th[data-col]{cursor:pointer}th[data-dir=first]::after{content:" \\25BE"}
th[data-dir=second]::after{content:" \\25B4"}
.filters{margin:.5em 0}.filters button{margin:0 4px 4px 0;cursor:pointer;border:1px solid #bbb;
background:#fff;border-radius:3px;padding:2px 8px}.filters button.on{background:#222;color:#fff}
.timeline{border:1px solid var(--line);padding:4px 0}
.lane{display:flex;align-items:center;height:22px}
.lane-name{width:9em;flex:none;padding:0 6px;font-size:.85em;color:#444;overflow:hidden;
white-space:nowrap;text-overflow:ellipsis}
.track{position:relative;flex:1;height:16px;background:#fafafa;margin-right:6px}
.bar{position:absolute;top:0;height:16px;min-width:2px;opacity:.85;border-radius:2px;
box-sizing:border-box;border-right:1px solid #fff}
.bar:hover{opacity:1;outline:1px solid #000}
.axis{display:flex;justify-content:space-between;margin-left:9em;font-size:.8em;color:#666;
padding-right:6px}
.flow{border-top:1px solid var(--line);padding:.3em 0}
.warn{color:var(--timeout);font-weight:600}.usage{color:#444;margin:.2em 0}
.flow img{max-width:min(480px,100%);border:1px solid var(--line);display:block;margin:4px 0}
.flow h3{overflow-wrap:anywhere}
.badge.flaky,.dot.flaky{background:var(--flaky)}
.dot{display:inline-block;width:8px;height:8px;border-radius:50%;margin-right:5px}
.filters .n{font-weight:600;font-variant-numeric:tabular-nums}
.filters button.on .n{color:#fff}
.wide{overflow-x:auto}
.bar.retry{opacity:.55;background-image:repeating-linear-gradient(135deg,
rgba(255,255,255,.6) 0 3px,transparent 3px 6px)}
pre.error{background:#fdecea;border-left:3px solid var(--failed);margin:.3em 0}
pre.message{margin:.3em 0}
details.full-error summary{cursor:pointer;color:#555;font-size:.9em}
details.full-error pre{max-height:24em;overflow:auto;font-size:.85em}
ol.steps{margin:.4em 0;padding-left:2.2em;max-width:60em}
ol.steps li{padding:1px 4px;border-bottom:1px solid #f0f0f0}
ol.steps li span.step-label{overflow-wrap:anywhere}
ol.steps .step-time{float:right;margin-left:1em;color:#555;font-variant-numeric:tabular-nums}
ol.steps li.step-failed{background:#fdecea;border-left:3px solid var(--failed);font-weight:600}
ol.steps li.step-failed .step-time{color:var(--failed)}
ol.steps li.step-not-run{color:#999}
.tail{margin:.4em 0;max-width:60em}.tail-name{font-size:.85em;color:#555}
.tail pre{margin:.1em 0;max-height:18em;overflow:auto;font-size:.85em}
.tail-empty{color:#777;font-size:.85em;margin:.3em 0}#flows td.status{white-space:nowrap}
.trace code{display:block;background:#f1f1f1;padding:4px 6px;margin-top:2px;
overflow-wrap:anywhere;user-select:all}
.attempts{margin:.4em 0}
@media (max-width:700px){
body{margin:0 .6em 1.5em}
.meta td{padding:2px 4px;overflow-wrap:anywhere}
.meta td:first-child{padding-right:.6em;white-space:nowrap;overflow-wrap:normal}
#flows,#flows tbody,#flows tr{display:block}#flows thead{display:none}
#flows tr{border-bottom:1px solid var(--line);padding:4px 0}
#flows td{display:inline-block;border:none;padding:1px 8px 1px 0}
#flows td[data-label]::before{content:attr(data-label) " ";color:#777;font-size:.85em}
#flows td[data-label=cpu],#flows td[data-label="peak MiB"],#flows td.none{display:none}
#flows td.msg,#flows td.files{display:block;max-width:none}
.lane-name{width:4em}.axis{margin-left:4em}
.attempts,.attempts tbody,.attempts tr{display:block}.attempts tr:first-child{display:none}
.attempts tr{border-bottom:1px solid var(--line);padding:3px 0}
.attempts td{display:inline-block;border:none;padding:1px 8px 1px 0}
.attempts td[data-label]::before{content:attr(data-label) " ";color:#777;font-size:.85em}
.attempts td.msg{display:block}.attempts td.none{display:none}
ol.steps{padding-left:1.6em}.flow figure{margin:4px 0}
}
[hidden]{display:none!important}
"""

JS = """
(function(){
var on={}, box=document.getElementById('filter-text');
var items=document.querySelectorAll('.flow-row,section.flow');
var buttons=document.querySelectorAll('.filters button');
function anyOn(){for(var k in on){if(on[k])return true;}return false;}
function apply(){
  var text=(box.value||'').toLowerCase(), all=!anyOn();
  for(var i=0;i<items.length;i++){var el=items[i];
    var picked=all||on[el.getAttribute('data-status')]||
      (on.flaky&&el.getAttribute('data-flaky')==='1');
    el.hidden=!(picked&&(el.getAttribute('data-search')||'').indexOf(text)>=0);}
  for(var j=0;j<buttons.length;j++){var name=buttons[j].getAttribute('data-filter');
    var pressed=name==='all'?all:!!on[name];
    buttons[j].classList.toggle('on',pressed);
    buttons[j].setAttribute('aria-pressed',pressed?'true':'false');}
}
document.getElementById('filters').hidden=false;
for(var k=0;k<buttons.length;k++){buttons[k].addEventListener('click',function(){
  var name=this.getAttribute('data-filter');
  if(name==='all'){on={};}else{on[name]=!on[name];}
  apply();});}
box.addEventListener('input',apply);
apply();
var body=document.querySelector('#flows tbody'), heads=document.querySelectorAll('th[data-col]');
function key(row,col,numeric){var cell=row.children[col];
  return numeric?parseFloat(cell.getAttribute('data-value')):cell.textContent.toLowerCase();}
for(var h=0;h<heads.length;h++){heads[h].addEventListener('click',function(){
  var col=+this.getAttribute('data-col'), numeric=this.hasAttribute('data-numeric');
  var dir=this.getAttribute('data-dir')==='first'?'second':'first';
  for(var n=0;n<heads.length;n++){heads[n].removeAttribute('data-dir');}
  this.setAttribute('data-dir',dir);
  var sign=(this.hasAttribute('data-desc')?-1:1)*(dir==='first'?1:-1);
  var rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){var x=key(a,col,numeric),y=key(b,col,numeric);
    return x<y?-sign:x>y?sign:(+a.getAttribute('data-pos'))-(+b.getAttribute('data-pos'));});
  for(var r=0;r<rows.length;r++){body.appendChild(rows[r]);}
});}
})();
"""
