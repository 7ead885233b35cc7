#Requires -Version 5.1
<#
.SYNOPSIS
Points a Windows VM of the virtual network at the egressgate proxy VM, and checks the route.

.DESCRIPTION
Sets the two proxy settings Windows keeps apart (see scripts/client/README.md):

  * WinINet for LocalSystem, the account the Azure VM agent and the backup extension run as:
    HKEY_USERS\S-1-5-18\Software\Microsoft\Windows\CurrentVersion\Internet Settings
      ProxyEnable   = 1                 (DWORD)
      ProxyServer   = HOST:PORT
      ProxyOverride = 168.63.129.16;169.254.169.254;<local>
    (the values the Azure Backup documentation's script sets for the system account);
  * WinHTTP, for services that use it:
      netsh winhttp set proxy proxy-server=HOST:PORT bypass-list="168.63.129.16;169.254.169.254;<local>"

168.63.129.16 (WireServer) and 169.254.169.254 (IMDS) must never go through the proxy: through it
they would answer as the proxy VM, or be refused. The previous values are saved, before the first
change, to %ProgramData%\egressgate-client\previous-settings.json; -Undo puts them back.
A second run with the same -Proxy changes nothing and says "already configured".

Then fetches -CheckUrl through the proxy with Invoke-WebRequest -Proxy and says what failed.
Exit status: 0 configured (and the check passed or was skipped), 1 the check failed (the settings
are applied all the same) or a step failed, 2 usage error.

This script has not been run by the project's tests: PowerShell is not available where they run.

.PARAMETER Proxy
The egressgate listener: IPv4 address, [IPv6] address or DNS name, and port: 10.0.0.5:3128.

.PARAMETER CheckUrl
An https URL to fetch through the proxy. The default, https://login.microsoftonline.com/, always
resolves, is in egressgate's azure-backup catalog and is needed by Azure Backup anyway; pass
https://<your storage account>.blob.core.windows.net/ to check the storage path of your region.

.PARAMETER NoCheck
Do not check the route.

.PARAMETER Undo
Restore the settings saved before the first run.

.EXAMPLE
.\windows-vm-setup.ps1 -Proxy 10.0.0.5:3128 -WhatIf

.EXAMPLE
.\windows-vm-setup.ps1 -Proxy 10.0.0.5:3128

.EXAMPLE
.\windows-vm-setup.ps1 -Undo
#>
[CmdletBinding(SupportsShouldProcess = $true, DefaultParameterSetName = 'Apply')]
param(
    [Parameter(Mandatory = $true, ParameterSetName = 'Apply', Position = 0)]
    [AllowEmptyString()]
    [string] $Proxy,

    [Parameter(ParameterSetName = 'Apply')]
    [string] $CheckUrl = 'https://login.microsoftonline.com/',

    [Parameter(ParameterSetName = 'Apply')]
    [switch] $NoCheck,

    [Parameter(Mandatory = $true, ParameterSetName = 'Undo')]
    [switch] $Undo
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$Prog = 'windows-vm-setup.ps1'
$Bypass = '168.63.129.16;169.254.169.254;<local>'
$InternetSettings = 'Registry::HKEY_USERS\S-1-5-18\Software\Microsoft\Windows\CurrentVersion\Internet Settings'
$Connections = 'Registry::HKEY_USERS\S-1-5-18\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections'
$UserInternetSettings = 'Registry::HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Internet Settings'
$UserConnections = "$UserInternetSettings\Connections"
$ConnectionBlobs = 'DefaultConnectionSettings', 'SavedLegacySettings'
# where netsh winhttp keeps its setting (a binary value); saved and restored as it is
$WinHttpKey = 'Registry::HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Internet Settings\Connections'
$WinHttpValue = 'WinHttpSettings'
$StateDir = Join-Path $env:ProgramData 'egressgate-client'
$StateFile = Join-Path $StateDir 'previous-settings.json'

function Exit-Usage([string] $Message) {
    [Console]::Error.WriteLine("${Prog}: $Message")
    [Console]::Error.WriteLine("Try 'Get-Help .\$Prog -Detailed'.")
    exit 2
}

# Returns @{ Host; Port; Server = 'host:port' (IPv6 in brackets) } or exits 2.
function ConvertTo-ProxyAddress([string] $Value) {
    $bad = "-Proxy '$Value'"
    if ($Value -eq '') { Exit-Usage "-Proxy is required: the egressgate listener as HOST:PORT (e.g. 10.0.0.5:3128)" }
    if ($Value -match '://') { Exit-Usage "${bad}: give HOST:PORT without a scheme" }
    if ($Value -match '^\[(?<addr>[^\]]*)\]:(?<port>[^:]*)$') {
        $address = $Matches['addr']; $port = $Matches['port']
        $ip = $null
        if (-not ([System.Net.IPAddress]::TryParse($address, [ref] $ip)) -or
            $ip.AddressFamily -ne [System.Net.Sockets.AddressFamily]::InterNetworkV6 -or $address -match '%') {
            Exit-Usage "${bad}: '$address' is not an IPv6 address"
        }
        $server = "[$address]:$port"
    } elseif ($Value -match '^\[') {
        Exit-Usage "${bad}: expected [IPV6]:PORT"
    } elseif ($Value -match ':.*:') {
        Exit-Usage "${bad}: put an IPv6 address in brackets: [ADDRESS]:PORT"
    } elseif ($Value -match '^(?<host>[^:]*):(?<port>[^:]*)$') {
        $address = $Matches['host']; $port = $Matches['port']
        if ($address -eq '') { Exit-Usage "${bad}: no host before ':'" }
        if ($address -match '^[0-9.]+$') {
            # [IPAddress]::TryParse takes "10.5" too: insist on four decimal octets
            if ($address -notmatch '^((0|[1-9][0-9]{0,2})\.){3}(0|[1-9][0-9]{0,2})$' -or
                @($address.Split('.') | Where-Object { [int] $_ -gt 255 }).Count -gt 0) {
                Exit-Usage "${bad}: '$address' is not an IPv4 address"
            }
        } elseif ($address.Length -gt 253 -or
                  $address -notmatch '^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$' -or
                  $address -match '\.[0-9]+$') {
            Exit-Usage "${bad}: '$address' is neither an IP address nor a DNS name"
        }
        $server = "${address}:$port"
    } else {
        Exit-Usage "${bad}: no port: expected HOST:PORT (egressgate listens on 3128 by default)"
    }
    if ($port -notmatch '^[1-9][0-9]{0,4}$' -or [int] $port -gt 65535) {
        Exit-Usage "${bad}: port '$port' is not a number from 1 to 65535"
    }
    return @{ Host = $address; Port = [int] $port; Server = $server }
}

function Test-Administrator {
    $principal = [Security.Principal.WindowsPrincipal] [Security.Principal.WindowsIdentity]::GetCurrent()
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

# One registry value as @{ Exists; Kind; Value } (Value base64 for binary), for the saved state.
function Get-RegistryValue([string] $Path, [string] $Name) {
    if (-not (Test-Path -LiteralPath $Path)) { return @{ Exists = $false; Kind = ''; Value = $null } }
    $key = Get-Item -LiteralPath $Path
    if ($key.GetValueNames() -notcontains $Name) { return @{ Exists = $false; Kind = ''; Value = $null } }
    $kind = $key.GetValueKind($Name).ToString()
    $value = $key.GetValue($Name, $null, [Microsoft.Win32.RegistryValueOptions]::DoNotExpandEnvironmentNames)
    if ($kind -eq 'Binary') { $value = [Convert]::ToBase64String([byte[]] $value) }
    return @{ Exists = $true; Kind = $kind; Value = $value }
}

function Set-RegistryValue([string] $Path, [string] $Name, [string] $Kind, $Value) {
    if (-not (Test-Path -LiteralPath $Path)) { New-Item -Path $Path -Force | Out-Null }
    if ($Kind -eq 'Binary') { $Value = [byte[]] [Convert]::FromBase64String($Value) }
    New-ItemProperty -LiteralPath $Path -Name $Name -PropertyType $Kind -Value $Value -Force | Out-Null
}

function Restore-RegistryValue([string] $Path, [string] $Name, $Saved) {
    if ($Saved.Exists) {
        Set-RegistryValue $Path $Name $Saved.Kind $Saved.Value
    } elseif (Test-Path -LiteralPath $Path) {
        Remove-ItemProperty -LiteralPath $Path -Name $Name -ErrorAction SilentlyContinue
    }
}

function Invoke-Netsh([string[]] $Arguments) {
    # no 2>&1: under 'Stop', Windows PowerShell turns a native stderr line into a terminating error
    $output = & netsh.exe @Arguments | Out-String
    if ($LASTEXITCODE -ne 0) { throw "netsh $($Arguments -join ' ') failed ($LASTEXITCODE): $output" }
    return $output
}

function Save-PreviousSettings {
    if (Test-Path -LiteralPath $StateFile) { return }   # the state before the first run stays
    $state = [ordered] @{
        ProxyEnable   = Get-RegistryValue $InternetSettings 'ProxyEnable'
        ProxyServer   = Get-RegistryValue $InternetSettings 'ProxyServer'
        ProxyOverride = Get-RegistryValue $InternetSettings 'ProxyOverride'
        WinHttp       = Get-RegistryValue $WinHttpKey $WinHttpValue
        DefaultConnectionSettings = Get-RegistryValue $Connections 'DefaultConnectionSettings'
        SavedLegacySettings       = Get-RegistryValue $Connections 'SavedLegacySettings'
    }
    New-Item -ItemType Directory -Path $StateDir -Force | Out-Null
    $state | ConvertTo-Json -Depth 4 | Set-Content -LiteralPath $StateFile -Encoding UTF8
    Write-Host "previous settings saved to $StateFile (-Undo restores them)"
}

# ---------------------------------------------------------------------------------------------
# The route check

function Get-ProxyReason($Exception) {
    $response = $null
    if ($Exception.PSObject.Properties['Response']) { $response = $Exception.Response }
    if ($null -eq $response) { return $null }
    try {
        $headers = $response.Headers
        if ($headers -is [System.Net.WebHeaderCollection]) { return $headers['X-Egressgate-Reason'] }
        $values = $null
        if ($headers.TryGetValues('X-Egressgate-Reason', [ref] $values)) { return @($values)[0] }
    } catch { }
    return $null
}

function Get-StatusCode($Exception) {
    if ($Exception.PSObject.Properties['Response'] -and $null -ne $Exception.Response) {
        try { return [int] $Exception.Response.StatusCode } catch { }
    }
    # PowerShell 7 (HttpClient): "The proxy tunnel request to proxy '...' failed with status code '403'."
    if ($Exception.Message -match "status code '?(\d{3})") { return [int] $Matches[1] }
    return 0
}

function Write-Reason([string] $Reason) {
    Write-Host "  egressgate's reason: $Reason"
    switch -Regex ($Reason) {
        '^(host_not_allowed|sni_not_allowed)$' { Write-Host '  The proxy does not allow this host: add it to [egress] hosts or catalogs on the proxy VM.' }
        '^port_not_allowed$' { Write-Host '  The port is not in [egress] ports on the proxy VM.' }
        '^(resolve_failed|resolve_timeout)$' { Write-Host "  The proxy VM could not resolve the name: check its DNS." }
        '^(connect_failed|connect_timeout)$' { Write-Host '  The proxy VM could not reach the destination: does the outbound NSG rule let the proxy VM out (Internet, or the Storage.<region> and AzureActiveDirectory service tags)?' }
        '^(client_connection_limit|client_rate_limit)$' { Write-Host '  This VM is over its share ([clients] limits on the proxy VM).' }
        default { Write-Host "  See the audit trail on the proxy VM (reason $Reason) for this VM's request." }
    }
}

function Test-Route([hashtable] $Address, [string] $Url) {
    $proxyUrl = "http://$($Address.Server)"
    Write-Host "checking the route: $Url through $proxyUrl"
    # Windows PowerShell 5.1 on older .NET may not offer TLS 1.2, which Azure endpoints require
    [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
    try {
        $response = Invoke-WebRequest -Uri $Url -Proxy $proxyUrl -UseBasicParsing -TimeoutSec 30 -MaximumRedirection 0
        Write-Host "route check OK: the destination answered HTTP $([int] $response.StatusCode) through the proxy"
        return $true
    } catch {
        $exception = $_.Exception
        $reason = Get-ProxyReason $exception
        $status = Get-StatusCode $exception
        $tunnelFailed = $exception.Message -match 'proxy tunnel|CONNECT'
        $proxyStatuses = @(403, 407, 429, 502, 503, 504)
        if ($status -ne 0 -and -not $reason -and -not $tunnelFailed -and $proxyStatuses -notcontains $status) {
            # an HTTP answer of the destination (a redirect, 401, 404 ...) came through the tunnel
            Write-Host "route check OK: the destination answered HTTP $status through the proxy"
            return $true
        }
        Write-Host "route check FAILED: $($exception.Message)"
        if ($reason) {
            Write-Host "  The proxy refused or failed the request ($status)."
            Write-Reason $reason
        } elseif ($status -eq 502 -or $status -eq 504) {
            Write-Host "  The proxy could not reach the destination ($status): NSG outbound rule for the proxy VM?"
        } elseif ($status -eq 407) {
            Write-Host "  407: that proxy wants authentication; egressgate never does. Is $($Address.Server) egressgate?"
        } elseif ($status -ne 0) {
            Write-Host "  HTTP $status without an X-Egressgate-Reason header (PowerShell 7 does not show a proxy's headers): see the proxy VM's audit trail for this VM's request."
        } elseif ($exception.Message -match 'SSL|TLS|trust relationship|certificate') {
            Write-Host '  TLS with the destination failed: egressgate never decrypts; something on the way inspects TLS, which Azure Backup does not support.'
        } elseif ($exception.Message -match 'actively refused|ConnectFailure|Unable to connect|No connection could be made') {
            Write-Host "  Could not connect to the proxy at $($Address.Server): is egressgate running and listening there, and does the proxy VM's NSG let VirtualNetwork in on port $($Address.Port)?"
        } elseif ($exception.Message -match 'timed out|Timeout|canceled') {
            Write-Host '  No answer in time: an NSG or firewall dropping traffic between this VM and the proxy VM, or the destination is slow.'
        } elseif ($exception.Message -match 'closed|reset|forcibly') {
            Write-Host "  The proxy closed the connection: is this VM's address in [clients] allow on the proxy VM?"
        }
        return $false
    }
}

# ---------------------------------------------------------------------------------------------
# Main

if (-not $WhatIfPreference -and -not (Test-Administrator)) {
    [Console]::Error.WriteLine("${Prog}: run it from an elevated PowerShell (Run as administrator), or try -WhatIf")
    exit 1
}

if ($Undo) {
    if (-not (Test-Path -LiteralPath $StateFile)) {
        Write-Host "nothing to undo: $StateFile does not exist (this script has changed nothing here)"
        exit 0
    }
    $saved = Get-Content -LiteralPath $StateFile -Raw | ConvertFrom-Json
    if ($PSCmdlet.ShouldProcess('LocalSystem WinINet proxy (HKEY_USERS\S-1-5-18)', 'restore the saved values')) {
        foreach ($name in 'ProxyEnable', 'ProxyServer', 'ProxyOverride') {
            Restore-RegistryValue $InternetSettings $name $saved.$name
        }
        foreach ($name in $ConnectionBlobs) {
            if ($saved.PSObject.Properties[$name]) { Restore-RegistryValue $Connections $name $saved.$name }
        }
        Write-Host 'LocalSystem WinINet proxy: restored'
    }
    if ($PSCmdlet.ShouldProcess('WinHTTP proxy', 'restore the saved setting')) {
        if ($saved.WinHttp.Exists) {
            Restore-RegistryValue $WinHttpKey $WinHttpValue $saved.WinHttp
        } else {
            Invoke-Netsh @('winhttp', 'reset', 'proxy') | Out-Null
        }
        Write-Host 'WinHTTP proxy: restored'
        Write-Host (Invoke-Netsh @('winhttp', 'show', 'proxy'))
    }
    if ($PSCmdlet.ShouldProcess($StateDir, 'remove the saved settings')) {
        Remove-Item -LiteralPath $StateDir -Recurse -Force
    }
    exit 0
}

$address = ConvertTo-ProxyAddress $Proxy
if (-not $NoCheck -and $CheckUrl -notmatch '^https://[^/?#\s]+([/?#]\S*)?$') {
    Exit-Usage "-CheckUrl '$CheckUrl': expected an https:// URL (the agent's traffic to storage is HTTPS)"
}
$server = $address.Server
Write-Host "proxy $server for LocalSystem (WinINet) and WinHTTP"

$changed = $false
$wanted = [ordered] @{
    ProxyEnable   = @{ Kind = 'DWord'; Value = 1 }
    ProxyServer   = @{ Kind = 'String'; Value = $server }
    ProxyOverride = @{ Kind = 'String'; Value = $Bypass }
}
$current = @{}
foreach ($name in $wanted.Keys) { $current[$name] = Get-RegistryValue $InternetSettings $name }
$wininetDone = $true
foreach ($name in $wanted.Keys) {
    $have = $current[$name]
    if (-not $have.Exists -or "$($have.Value)" -ne "$($wanted[$name].Value)" -or $have.Kind -ne $wanted[$name].Kind) {
        $wininetDone = $false
    }
}
if ($wininetDone) {
    Write-Host 'LocalSystem WinINet proxy: already configured'
} elseif ($PSCmdlet.ShouldProcess("$InternetSettings", "set ProxyEnable=1, ProxyServer=$server, ProxyOverride=$Bypass")) {
    Save-PreviousSettings
    foreach ($name in $wanted.Keys) {
        Set-RegistryValue $InternetSettings $name $wanted[$name].Kind $wanted[$name].Value
    }
    Write-Host 'LocalSystem WinINet proxy: updated'
    $changed = $true
}

# WinINet keeps the same settings a second time, in binary values under Connections, and may
# prefer those. The Azure Backup document's script copies them from the current user; do the same
# when this user's Internet Options name exactly this proxy and bypass list (the format is not
# documented, so it is copied, never written).
$userEnable = Get-RegistryValue $UserInternetSettings 'ProxyEnable'
$userServer = Get-RegistryValue $UserInternetSettings 'ProxyServer'
$userOverride = Get-RegistryValue $UserInternetSettings 'ProxyOverride'
if ($userEnable.Exists -and "$($userEnable.Value)" -eq '1' -and $userServer.Exists -and "$($userServer.Value)" -eq $server -and
    $userOverride.Exists -and "$($userOverride.Value)" -eq $Bypass) {
    foreach ($name in $ConnectionBlobs) {
        $mine = Get-RegistryValue $UserConnections $name
        $system = Get-RegistryValue $Connections $name
        if (-not $mine.Exists -or $mine.Kind -ne 'Binary') { continue }
        if ($system.Exists -and $system.Value -eq $mine.Value) {
            Write-Host "LocalSystem ${name}: already configured"
        } elseif ($PSCmdlet.ShouldProcess("$Connections", "copy $name from the current user")) {
            Save-PreviousSettings
            Set-RegistryValue $Connections $name 'Binary' $mine.Value
            Write-Host "LocalSystem ${name}: copied from the current user"
            $changed = $true
        }
    }
} elseif ((Get-RegistryValue $Connections 'DefaultConnectionSettings').Exists) {
    Write-Warning ("LocalSystem has a DefaultConnectionSettings value, which WinINet may prefer over the values above. " +
        "To copy a matching one as the Azure Backup documentation does, set the proxy $server with the bypass list " +
        "'$Bypass' in this user's Internet Options (LAN settings) and run this script again.")
}

$shown = Invoke-Netsh @('winhttp', 'show', 'proxy')
# the values are literal in netsh's (localized) output: look for them, not for the labels
$winhttpDone = ($shown -match "(?m)\s$([regex]::Escape($server))\s*$") -and
               ($shown -match "(?m)\s$([regex]::Escape($Bypass))\s*$")
if ($winhttpDone) {
    Write-Host 'WinHTTP proxy: already configured'
} elseif ($PSCmdlet.ShouldProcess('WinHTTP proxy', "netsh winhttp set proxy proxy-server=$server bypass-list=$Bypass")) {
    Save-PreviousSettings
    Invoke-Netsh @('winhttp', 'set', 'proxy', "proxy-server=$server", "bypass-list=$Bypass") | Out-Null
    Write-Host 'WinHTTP proxy: updated'
    $changed = $true
}

if (-not $changed -and $wininetDone -and $winhttpDone) {
    Write-Host 'already configured: nothing changed'
} elseif ($changed) {
    Write-Host 'Processes already running keep the settings they read at start: restart the VM agent service (WindowsAzureGuestAgent), or the VM, if backups still fail after a passing check.'
}

if ($WhatIfPreference -or $NoCheck) { exit 0 }
if (Test-Route $address $CheckUrl) { exit 0 }
exit 1
