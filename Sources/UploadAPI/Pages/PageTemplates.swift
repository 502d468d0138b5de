import Mustache

/// The pages' Mustache templates, style sheet and one script, compiled into the binary so that
/// `serve` needs no files beside it.
///
/// Every `{{name}}` is escaped by ``SafeMarkdown/escape(_:)``, one Unicode scalar at a time, under
/// the content type ``escapingContentType`` that each template names first. Not by swift-mustache's
/// own HTML type: that one looks characters up as Swift `Character`s, and a `<` or `"` joined to
/// a neighbouring scalar in one grapheme (U+0600 before it, U+0301 after it) passes unescaped.
/// The only unescaped values, `{{{body}}}` and `{{{html}}}`, are markup this server made itself
/// (a page, or ``SafeMarkdown``'s output).
enum PageTemplates {
    static let escapingContentType = "UPLOAD_COORDINATOR_HTML"

    struct ScalarEscapedHTML: MustacheContentType {
        func escapeText(_ text: String) -> String { SafeMarkdown.escape(text) }
    }

    static let library: MustacheLibrary = {
        MustacheContentTypes.register(ScalarEscapedHTML(), named: escapingContentType)
        var library = MustacheLibrary()
        for (name, text) in templates {
            // The templates are constants of this file: one that does not parse is a programming error.
            try! library.register("{{% CONTENT_TYPE: \(escapingContentType) }}" + text, named: name)
        }
        return library
    }()

    static let templates: [(String, String)] = [
        ("layout", layout), ("registry", registry), ("repository", repository), ("audit", audit), ("proof", proof),
        ("signIn", signIn), ("message", message),
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · {{registryName}}</title>
        <link rel="stylesheet" href="/gallery/assets/style.css">
        {{#script}}<script src="/gallery/assets/{{script}}" defer></script>{{/script}}
        </head>
        <body>
        <header>
        <a class="brand" href="/gallery/">{{registryName}}</a>
        <nav><a href="/gallery/">Repositories</a> <a href="/gallery/audit">Audit</a>
        {{#signedInAs}}<form class="inline" method="post" action="/gallery/sign-out"><span class="who">{{signedInAs}}</span> <button type="submit">Sign out</button></form>{{/signedInAs}}
        </nav>
        </header>
        <main>
        {{{body}}}
        </main>
        <footer>upload-coordinator · registry {{registryId}} · this page shows the log up to position {{position}}</footer>
        </body>
        </html>
        """

    static let registry = """
        <h1>{{registryName}}</h1>
        <form class="search" method="get" action="/gallery/">
        <label for="q">Find a repository</label>
        <input id="q" name="q" type="search" value="{{query}}" placeholder="name contains…" maxlength="256">
        <button type="submit">Search</button>
        </form>
        {{^repositories}}<p class="empty" id="no-repositories">{{#hasQuery}}No repository's name contains “{{query}}”.{{/hasQuery}}{{^hasQuery}}No repositories yet.{{/hasQuery}}</p>{{/repositories}}
        <ul class="cards" id="repositories">
        {{#repositories}}
        <li class="card">
        {{#logoPath}}<img class="logo" src="{{logoPath}}" alt="" width="48" height="48">{{/logoPath}}
        <h2><a class="repository-link" href="{{path}}">{{name}}</a></h2>
        {{#description}}<p class="description">{{description}}</p>{{/description}}
        <dl>
        {{#architectures}}<dt>Architectures</dt><dd>{{architectures}}</dd>{{/architectures}}
        {{#operatingSystems}}<dt>Operating systems</dt><dd>{{operatingSystems}}</dd>{{/operatingSystems}}
        {{#showsPushes}}
        <dt>Latest tag{{#tagsReadNote}} ({{tagsReadNote}}){{/tagsReadNote}}</dt><dd>{{#latestTag}}<code>{{latestTag}}</code>{{/latestTag}}{{^latestTag}}none{{/latestTag}}</dd>
        <dt>Last push{{#tagsReadNote}} ({{tagsReadNote}}){{/tagsReadNote}}</dt><dd>{{#lastPush}}<time>{{lastPush}}</time>{{/lastPush}}{{^lastPush}}never{{/lastPush}}</dd>
        {{/showsPushes}}
        </dl>
        </li>
        {{/repositories}}
        </ul>
        {{#nextPath}}<p><a id="next-page" href="{{nextPath}}">Next page</a></p>{{/nextPath}}
        {{#scanNote}}<p class="note">{{scanNote}}</p>{{/scanNote}}
        """

    static let repository = """
        <p><a href="/gallery/">← Repositories</a></p>
        <div class="title">
        {{#logoPath}}<img class="logo" src="{{logoPath}}" alt="" width="64" height="64">{{/logoPath}}
        <h1 id="repository-name">{{name}}</h1>
        </div>
        {{#description}}<p class="description">{{description}}</p>{{/description}}
        <dl>
        {{#architectures}}<dt>Architectures</dt><dd>{{architectures}}</dd>{{/architectures}}
        {{#operatingSystems}}<dt>Operating systems</dt><dd>{{operatingSystems}}</dd>{{/operatingSystems}}
        </dl>
        <section>
        <h2>Pull it</h2>
        <pre class="command" id="pull-command">{{pullCommand}}</pre>
        </section>
        {{#about}}<section class="markdown" id="about"><h2>About</h2>{{{html}}}</section>{{/about}}
        {{#usage}}<section class="markdown" id="usage"><h2>Usage</h2>{{{html}}}</section>{{/usage}}
        <section>
        <h2>Tags</h2>
        {{^tags}}{{^tagsNote}}<p class="empty">No tags.</p>{{/tagsNote}}{{/tags}}
        {{#hasTags}}<table id="tags"><thead><tr><th>Tag</th><th>Digest</th><th>Size</th><th>Pushed</th></tr></thead><tbody>
        {{#tags}}<tr><td class="tag"><code>{{name}}</code></td><td><code class="digest">{{digest}}</code></td><td>{{size}}</td><td><time>{{pushedAt}}</time></td></tr>{{/tags}}
        </tbody></table>{{/hasTags}}
        {{#tagsNote}}<p class="note">{{tagsNote}}</p>{{/tagsNote}}
        </section>
        <section>
        <h2>Images</h2>
        {{#imagesHidden}}<p class="note">This repository's policy does not let you see its images.</p>{{/imagesHidden}}
        {{^imagesHidden}}{{^images}}<p class="empty">No images.</p>{{/images}}{{/imagesHidden}}
        {{#hasImages}}<table id="images"><thead><tr><th>Digest</th><th>Tags</th><th>Type</th><th>Size</th><th>Pushed</th></tr></thead><tbody>
        {{#images}}<tr><td><code class="digest">{{digest}}</code></td><td>{{imageTags}}</td><td>{{mediaType}}</td><td>{{size}}</td><td><time>{{pushedAt}}</time></td></tr>{{/images}}
        </tbody></table>{{/hasImages}}
        {{#imagesNote}}<p class="note">{{imagesNote}}</p>{{/imagesNote}}
        </section>
        <section>
        <h2>Recent uploads</h2>
        {{#imagesHidden}}<p class="note">This repository's policy does not let you see its uploads.</p>{{/imagesHidden}}
        {{#uploadsHidden}}<p class="note">Uploads are shown to this registry's keys, signed in.</p>{{/uploadsHidden}}
        {{^imagesHidden}}{{^uploadsHidden}}{{^uploads}}{{^uploadsNote}}<p class="empty">No uploads in the last {{uploadWindow}}.</p>{{/uploadsNote}}{{/uploads}}{{/uploadsHidden}}{{/imagesHidden}}
        {{#hasUploads}}<table id="uploads"><thead><tr><th>Initiated</th><th>Upload</th><th>State</th><th>Parts</th><th>Bytes</th><th>Layer</th></tr></thead><tbody>
        {{#uploads}}<tr><td><time>{{initiatedAt}}</time></td><td><code>{{uploadId}}</code></td><td class="state {{state}}">{{state}}</td><td>{{parts}}</td><td>{{bytes}}</td><td>{{#layerDigest}}<code class="digest">{{layerDigest}}</code>{{/layerDigest}}</td></tr>{{/uploads}}
        </tbody></table>{{/hasUploads}}
        {{#uploadsNote}}<p class="note">{{uploadsNote}}</p>{{/uploadsNote}}
        </section>
        """

    static let audit = """
        <h1>Audit trail</h1>
        <section class="log" id="log-state">
        <dl>
        <dt>Events in the log</dt><dd id="log-size">{{treeSize}}</dd>
        <dt>Merkle root</dt><dd><code id="log-root">{{rootHash}}</code></dd>
        {{#checkpoint}}<dt>Latest signed checkpoint</dt><dd>size {{size}}, signed by <code>{{origin}}</code></dd>{{/checkpoint}}
        {{#checkpointProblem}}<dt>Latest signed checkpoint</dt><dd class="error">{{checkpointProblem}}</dd>{{/checkpointProblem}}
        </dl>
        </section>
        <form class="filters" method="get" action="/gallery/audit">
        <label>Repository <input name="repository" value="{{repository}}" maxlength="256" placeholder="name"></label>
        <label>Principal <input name="principal" value="{{principal}}" maxlength="256" placeholder="access key id"></label>
        <label>Source <select name="source">{{#sources}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/sources}}</select></label>
        <label>Within <select name="hours">{{#windows}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/windows}}</select></label>
        <button type="submit">Filter</button>
        </form>
        <h2>Upload initiations, newest first <span class="live" id="live-status" data-stream="{{streamPath}}">live updates off</span></h2>
        <table id="initiations"><thead><tr><th>Position</th><th>Time</th><th>Repository</th><th>Principal</th><th>Source</th><th>Upload</th><th>Proof</th></tr></thead><tbody>
        {{#initiations}}<tr><td>{{position}}</td><td><time>{{recordedAt}}</time></td><td>{{repository}}</td><td>{{principal}}</td><td>{{source}}</td><td><code>{{uploadId}}</code></td><td><a class="proof-link" href="/gallery/audit/proofs/{{position}}">check</a></td></tr>{{/initiations}}
        </tbody></table>
        {{^initiations}}<p class="empty" id="no-initiations">No initiations match.</p>{{/initiations}}
        {{#olderPath}}<p><a id="older" href="{{olderPath}}">Older initiations</a></p>{{/olderPath}}
        {{#scanNote}}<p class="note">{{scanNote}}</p>{{/scanNote}}
        """

    static let proof = """
        <p><a href="/gallery/audit">← Audit trail</a></p>
        <h1>Inclusion of event {{position}}</h1>
        <p class="verdict {{verdictClass}}" id="verdict">{{verdict}}</p>
        <h2>What was checked, on this server, just now</h2>
        <ol id="checks">{{#checks}}<li class="{{outcome}}">{{text}}</li>{{/checks}}</ol>
        <h2>The event</h2>
        <dl>
        <dt>Type</dt><dd>{{eventType}}</dd>
        <dt>Recorded</dt><dd><time>{{recordedAt}}</time></dd>
        <dt>Repository</dt><dd>{{repository}}</dd>
        <dt>Principal</dt><dd>{{principal}}</dd>
        <dt>Source</dt><dd>{{source}}</dd>
        {{#uploadId}}<dt>Upload</dt><dd><code>{{uploadId}}</code></dd>{{/uploadId}}
        </dl>
        <h2>The proof</h2>
        <dl>
        <dt>Tree size</dt><dd id="tree-size">{{treeSize}}</dd>
        <dt>Root</dt><dd><code id="root-hash">{{rootHash}}</code></dd>
        <dt>Leaf hash</dt><dd><code id="leaf-hash">{{leafHash}}</code></dd>
        <dt>Audit path</dt><dd><ol class="path">{{#path}}<li><code>{{.}}</code></li>{{/path}}</ol></dd>
        </dl>
        <p class="note">To check it yourself: {{#uploadId}}<code>upload-coordinator audit proof --upload-id {{uploadId}}</code> prints this proof with its record, and <code>audit verify-proof</code> checks it offline against a root you trust; {{/uploadId}}<code>GET /log/proof/inclusion?index={{leafIndex}}&amp;size={{treeSize}}</code> serves the path to any client.</p>
        """

    static let signIn = """
        <h1>Sign in</h1>
        <p>{{purpose}}</p>
        {{#error}}<p class="error" id="sign-in-error">{{error}}</p>{{/error}}
        {{#acceptsKeys}}
        <form class="sign-in" method="post" action="/gallery/sign-in">
        <input type="hidden" name="next" value="{{next}}">
        <label>Access key id <input id="access-key-id" name="accessKeyId" autocomplete="username" required maxlength="128"></label>
        <label>Secret access key <input id="secret-access-key" name="secretAccessKey" type="password" autocomplete="current-password" required maxlength="256"></label>
        <button id="sign-in" type="submit">Sign in</button>
        </form>
        <p class="note">The key is checked once; the server then keeps you signed in with a signed cookie for {{hours}} hours.</p>
        {{/acceptsKeys}}
        {{^acceptsKeys}}<p class="error">This server was started with --allow-anonymous and has no keys, so no one can sign in: start it with --credentials to use the audit page.</p>{{/acceptsKeys}}
        """

    static let message = """
        <h1>{{heading}}</h1>
        <p id="message">{{text}}</p>
        <p><a href="/gallery/">Repositories</a></p>
        """

    static let styleSheet = """
        :root { --ink: #1d2430; --muted: #5b6576; --line: #dde2ea; --accent: #0b63ce; --ok: #17803d; --bad: #b42318; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #f6f8fb; }
        header { display: flex; justify-content: space-between; align-items: center; padding: .75rem 1.5rem; background: #0f1b2d; }
        header a { color: #fff; text-decoration: none; margin-right: 1rem; }
        header .brand { font-weight: 700; font-size: 1.1rem; }
        header .who { color: #c9d4e5; font-size: .85rem; }
        nav { display: flex; align-items: center; gap: .25rem; }
        form.inline { display: inline; margin: 0; }
        main { max-width: 72rem; margin: 0 auto; padding: 1.5rem; }
        footer { max-width: 72rem; margin: 0 auto; padding: 1rem 1.5rem 2rem; color: var(--muted); font-size: .8rem; }
        h1 { margin: .2rem 0 1rem; }
        a { color: var(--accent); }
        code, pre { font: 13px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; }
        code.digest { word-break: break-all; }
        pre { background: #0f1b2d; color: #e8eef7; padding: .75rem 1rem; border-radius: 6px; overflow-x: auto; }
        .search, .filters, .sign-in { display: flex; flex-wrap: wrap; gap: .75rem; align-items: end; margin-bottom: 1.25rem; }
        .sign-in { flex-direction: column; align-items: start; max-width: 24rem; }
        label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); gap: .2rem; }
        input, select, button { font: inherit; padding: .4rem .6rem; border: 1px solid var(--line); border-radius: 5px; background: #fff; }
        button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
        .cards { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr)); gap: 1rem; }
        .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.25rem; }
        .card h2 { margin: 0 0 .3rem; font-size: 1.1rem; }
        .logo { float: right; border-radius: 6px; object-fit: contain; }
        .title { display: flex; gap: 1rem; align-items: center; }
        .title .logo { float: none; }
        dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: .5rem 0; }
        dt { color: var(--muted); }
        dd { margin: 0; overflow-wrap: anywhere; }
        table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); margin-bottom: 1rem; }
        th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; font-size: .9rem; }
        th { background: #eef2f7; }
        section { margin: 1.5rem 0; }
        .markdown { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .25rem 1.25rem; }
        .empty, .note { color: var(--muted); }
        .error { color: var(--bad); font-weight: 600; }
        .verdict { font-size: 1.15rem; font-weight: 700; padding: .75rem 1rem; border-radius: 6px; }
        .verdict.ok { background: #e7f6ec; color: var(--ok); }
        .verdict.bad { background: #fdecea; color: var(--bad); }
        #checks li.passed::marker { color: var(--ok); }
        #checks li.failed { color: var(--bad); }
        #checks li.skipped { color: var(--muted); }
        .state.completed { color: var(--ok); }
        .state.expired, .state.aborted { color: var(--bad); }
        .live { font-size: .8rem; font-weight: 400; color: var(--muted); margin-left: .5rem; }
        .live.on { color: var(--ok); }
        tr.fresh { background: #fff7d6; }
        """

    /// Follows the audit page's stream (Server-Sent Events): each initiation that matches the
    /// page's filters becomes a new first row, and the log's size and root follow the log. Text
    /// only ever goes in through `textContent`, never as markup.
    static let liveScript = """
        "use strict";
        (function () {
          var status = document.getElementById("live-status");
          var table = document.querySelector("#initiations tbody");
          if (!status || !table || !window.EventSource || !status.getAttribute("data-stream")) { return; }
          var source = new EventSource(status.getAttribute("data-stream"));
          function cell(row, text, code) {
            var td = document.createElement("td");
            if (code) { var c = document.createElement("code"); c.textContent = text; td.appendChild(c); } else { td.textContent = text; }
            row.appendChild(td);
            return td;
          }
          source.onopen = function () { status.textContent = "live"; status.className = "live on"; };
          source.onerror = function () {
            // Closed for good when the answer is no stream: the session expired, so sign in again.
            status.textContent = source.readyState === EventSource.CLOSED ? "stopped: reload the page to sign in again" : "reconnecting…";
            status.className = "live";
          };
          source.addEventListener("initiation", function (message) {
            var entry = JSON.parse(message.data);
            var row = document.createElement("tr");
            row.className = "fresh";
            cell(row, String(entry.position));
            cell(row, entry.recordedAt);
            cell(row, entry.repository);
            cell(row, entry.principal);
            cell(row, entry.source);
            cell(row, entry.uploadId, true);
            var link = document.createElement("a");
            link.className = "proof-link";
            link.href = "/gallery/audit/proofs/" + String(Number(entry.position));
            link.textContent = "check";
            cell(row, "").appendChild(link);
            table.insertBefore(row, table.firstChild);
            var none = document.getElementById("no-initiations");
            if (none) { none.remove(); }
          });
          source.addEventListener("changed", function () {
            // The log no longer holds what this page shows (a restore, a failover): not resumed.
            source.close();
            status.textContent = "stopped: the log changed under this page; reload it";
            status.className = "live";
          });
          source.addEventListener("log", function (message) {
            var log = JSON.parse(message.data);
            document.getElementById("log-size").textContent = String(log.treeSize);
            document.getElementById("log-root").textContent = log.rootHash;
          });
        })();
        """
}
