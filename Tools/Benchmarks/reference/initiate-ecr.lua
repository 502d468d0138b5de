-- wrk script: ECR Public InitiateLayerUpload (AWS JSON 1.1), the request `aws ecr-public
-- initiate-layer-upload` sends, minus the SigV4 headers (the benchmark server runs with
-- --allow-anonymous on loopback). The path comes from the URL on the wrk command line, so the
-- same script measures the no-op route (…/noop) of the same server.
-- Counting and the WRKRESULT line are the same as initiate-oci.lua's (the peer's script), with
-- 200 as the expected status.
wrk.method = "POST"
wrk.body   = '{"repositoryName":"bench/app"}'
wrk.headers["Content-Type"] = "application/x-amz-json-1.1"
wrk.headers["X-Amz-Target"] = "SpencerFrontendService.InitiateLayerUpload"

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   accepted = 0
   other = 0
end

function response(status, headers, body)
   if status == 200 then
      accepted = accepted + 1
   else
      other = other + 1
   end
end

function done(summary, latency, requests)
   local acc, oth = 0, 0
   for _, t in ipairs(threads) do
      acc = acc + (t:get("accepted") or 0)
      oth = oth + (t:get("other") or 0)
   end
   local secs = summary.duration / 1e6
   io.write(string.format(
      "WRKRESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f mean_ms=%.3f status200=%d other_status=%d socket_errors=%d\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
      acc, oth,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
