#!/usr/bin/env bash
# The packages as a user gets them: pack, restore into a new `dotnet new console` project from a local folder feed
# (its own NuGet config and packages folder, so nothing leaks into the machine's cache), build the getting-started
# program (samples/GettingStarted/Program.cs, shown whole in docs/articles/getting-started.md) with warnings as
# errors, and run it on a temporary data root. Then build it once more with the packages' platform mark turned off
# (src/Virtuozzo.Sdk.Core/buildTransitive/Virtuozzo.Sdk.Core.props) and require CA1416 warnings there, so that the
# clean build shows the mark at work. Run by ./build.sh test (counted as one test) and ./build.sh consumer.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFIG=${CONFIG:-Release}
log() { printf '==> consumer check: %s\n' "$*" >&2; }

work=$(mktemp -d /tmp/vzsdk-consumer.XXXXXX)
trap 'rm -rf "$work"' EXIT
version=$(sed -n 's:.*<VersionPrefix>\(.*\)</VersionPrefix>.*:\1:p' Directory.Build.props)
ext_version=$(sed -n 's:.*Include="Microsoft.Extensions.DependencyInjection" Version="\([^"]*\)".*:\1:p' Directory.Packages.props)

log "packing $version into $work/feed"
dotnet pack Virtuozzo.Sdk.sln -c "$CONFIG" -nologo -v quiet -clp:ErrorsOnly -o "$work/feed"
cat > "$work/nuget.config" <<NUGET
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$work/feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
NUGET
export NUGET_PACKAGES="$work/packages"

app="$work/app"
dotnet new console -o "$app" -n ConsumerApp --no-restore >/dev/null
cp samples/GettingStarted/Program.cs "$app/Program.cs"
# The packages docs/articles/getting-started.md names, with the same commands.
for p in Virtuozzo.Sdk.Core Virtuozzo.Sdk.Storage.Qcow2 Virtuozzo.Sdk.Containers Virtuozzo.Sdk.Vm; do
  dotnet add "$app/ConsumerApp.csproj" package "$p" --version "$version" --no-restore >/dev/null
done
for p in Microsoft.Extensions.DependencyInjection Microsoft.Extensions.Logging.Console; do
  dotnet add "$app/ConsumerApp.csproj" package "$p" --version "$ext_version" --no-restore >/dev/null
done

log "building a new console project against the packages, warnings as errors"
dotnet build "$app/ConsumerApp.csproj" -c Release -nologo -warnaserror -v quiet -clp:NoSummary
mkdir -p "$work/root"
out=$(dotnet "$app/bin/Release/net10.0/ConsumerApp.dll" "$work/root")
printf '%s\n' "$out"
grep -q "^0 VEs in $work/root\$" <<<"$out" || { log "the program did not list the empty data root"; exit 1; }
grep -q "qcow2, virtual size 1073741824 bytes" <<<"$out" || { log "the program did not create its disk"; exit 1; }

n=$(dotnet build "$app/ConsumerApp.csproj" -c Release -nologo -p:VirtuozzoSdkSupportedOSPlatform=false -v quiet 2>&1 \
  | grep -o 'warning CA1416[^[]*' | sort -u | wc -l)
log "without the packages' platform mark the same build has $n CA1416 warnings"
[ "$n" -gt 0 ] || { log "expected CA1416 warnings without the mark: the check no longer shows what the mark does"; exit 1; }
log "passed"
