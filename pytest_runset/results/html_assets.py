"""The stylesheet and script inlined into every HTML report page (see :mod:`.html`).

The script's SHA-256 goes into the page's Content-Security-Policy, so any change to ``JS`` is
picked up by the renderer without further edits.
"""

from __future__ import annotations

CSS = """
:root{--passed:#2e7d32;--failed:#c62828;--error:#ad1457;--timeout:#e65100;--skipped:#757575;
--xfailed:#6d4c41;--xpassed:#f9a825;--interrupted:#6a1b9a;--not_run:#9e9e9e;--line:#ddd}
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
.flow img{max-width:480px;border:1px solid var(--line);display:block;margin:4px 0}
[hidden]{display:none!important}
"""

JS = """
(function(){
var active='all', box=document.getElementById('filter-text');
var items=document.querySelectorAll('[data-status]');
function apply(){
  var text=(box.value||'').toLowerCase();
  for(var i=0;i<items.length;i++){var el=items[i];
    if(el.classList.contains('bar'))continue;
    var ok=(active==='all'||el.getAttribute('data-status')===active)&&
      (el.getAttribute('data-search')||'').indexOf(text)>=0;
    el.hidden=!ok;}
  var buttons=document.querySelectorAll('.filters button');
  for(var j=0;j<buttons.length;j++){buttons[j].classList.toggle('on',
    buttons[j].getAttribute('data-filter')===active);}
}
document.getElementById('filters').hidden=false;
var buttons=document.querySelectorAll('.filters button');
for(var k=0;k<buttons.length;k++){buttons[k].addEventListener('click',function(){
  active=this.getAttribute('data-filter');apply();});}
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
